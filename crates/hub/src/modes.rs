//! Normal and emergency mode (平战结合), for a whole tenant or for named areas of it.
//!
//! An *area* is a named GeoJSON Polygon or MultiPolygon (a district, a flood plain, the
//! ring around a chemical plant). The tenant has one mode, and each area may be
//! switched to emergency on its own. Where a place is in emergency (the tenant is, or
//! an area holding the place is):
//! - rules judge the entities located there by their `emergency:` conditions (the
//!   engine knows each entity's last position; see `Engine::set_emergency`);
//! - incidents filed there take the emergency SLA targets, the emergency routing
//!   table and the emergency plans; their NGSI-LD entity carries `mode: emergency`, so
//!   responders' subscriptions (the notification channels) select on it.
//!
//! An incident or entity without a location follows the tenant's mode. Every switch,
//! of the tenant or of an area, needs a reason and is kept in the mode history with
//! who, when, from and to; switching back undoes it (open incidents keep the targets
//! they were filed with, as they were promised).

use std::collections::{BTreeMap, HashMap};

use citybrain_access::{RequestContext, Resource, Verb};
use citybrain_rules::Zone;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::requests::DeskError;
use crate::sla::Mode;
use crate::{Hub, HubError};

/// Modes as earlier versions stored them beside the history (`current`, `area:<name>`):
/// read at start, then the history is replayed over them.
pub(crate) const MODE: &str = "mode";
/// Every switch, numbered: what the modes are.
pub(crate) const MODE_HISTORY: &str = "mode_history";
pub(crate) const AREAS: &str = "areas";

/// An area as written: its geometry and an optional description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AreaSpec {
    /// A GeoJSON Polygon or MultiPolygon (longitude, latitude).
    pub geometry: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Area {
    spec: AreaSpec,
    zone: Zone,
}

impl Area {
    fn compile(spec: AreaSpec) -> Result<Area, String> {
        let zone = Zone::from_geojson("geometry", &spec.geometry).map_err(|e| e.to_string())?;
        Ok(Area { spec, zone })
    }
}

/// A switch of mode, as kept in the tenant's mode history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModeChange {
    pub at: chrono::DateTime<chrono::Utc>,
    pub by: String,
    /// The area switched; none for the whole tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    pub from: Mode,
    pub to: Mode,
    pub reason: String,
}

/// Where the modes stand.
#[derive(Debug, Clone, Serialize)]
pub struct Modes {
    /// The tenant's mode.
    pub mode: Mode,
    /// The mode of each area (areas not listed are normal).
    pub areas: BTreeMap<String, Mode>,
    /// Every switch, oldest first.
    pub history: Vec<ModeChange>,
}

/// The modes of one tenant.
#[derive(Debug, Default)]
pub(crate) struct ModeState {
    pub tenant: Mode,
    pub areas: BTreeMap<String, Area>,
    /// Areas in emergency mode.
    pub emergency_areas: std::collections::BTreeSet<String>,
    pub changes: u64,
}

impl ModeState {
    /// The mode at a place: emergency when the tenant is, or when an area in emergency
    /// holds it. A place unknown follows the tenant.
    pub fn at(&self, place: Option<[f64; 2]>) -> Mode {
        if self.tenant == Mode::Emergency {
            return Mode::Emergency;
        }
        match place {
            Some(p)
                if self
                    .emergency_areas
                    .iter()
                    .filter_map(|n| self.areas.get(n))
                    .any(|a| a.zone.contains(p)) =>
            {
                Mode::Emergency
            }
            _ => Mode::Normal,
        }
    }

    /// What the rule engine needs: emergency everywhere, or these zones.
    fn engine_view(&self) -> (bool, Vec<Zone>) {
        (
            self.tenant == Mode::Emergency,
            self.emergency_areas
                .iter()
                .filter_map(|n| self.areas.get(n))
                .map(|a| a.zone.clone())
                .collect(),
        )
    }

    fn area_mode(&self, name: &str) -> Mode {
        if self.emergency_areas.contains(name) {
            Mode::Emergency
        } else {
            Mode::Normal
        }
    }
}

fn check_area_name(name: &str) -> Result<(), DeskError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(DeskError::Invalid(format!(
            "area: '{name}' is not an area name (1-64 letters, digits, '-', '_', '.')"
        )))
    }
}

/// Reads the stored areas and modes, per tenant.
pub(crate) fn load(
    store: &dyn citybrain_storage::EntityStore,
) -> Result<HashMap<String, ModeState>, citybrain_storage::StoreError> {
    let mut out: HashMap<String, ModeState> = HashMap::new();
    for (tenant, name, doc) in citybrain_storage::load_collection(store, AREAS)? {
        match serde_json::from_value::<AreaSpec>(doc)
            .map_err(|e| e.to_string())
            .and_then(Area::compile)
        {
            Ok(a) => {
                out.entry(tenant).or_default().areas.insert(name, a);
            }
            Err(e) => {
                tracing::warn!(tenant, area = name, error = %e, "a stored area no longer loads")
            }
        }
    }
    for (tenant, key, doc) in citybrain_storage::load_collection(store, MODE)? {
        let Ok(m) = serde_json::from_value::<Mode>(doc) else {
            continue;
        };
        let st = out.entry(tenant).or_default();
        match key.strip_prefix("area:") {
            Some(area) if m == Mode::Emergency => {
                st.emergency_areas.insert(area.to_string());
            }
            Some(_) => {}
            None => st.tenant = m,
        }
    }
    // The history, in order, is what the modes are (earlier versions also wrote each
    // mode as a document of `MODE`, read above for data stored before the history
    // was kept whole).
    let mut history = citybrain_storage::load_collection(store, MODE_HISTORY)?;
    history.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    for (tenant, key, doc) in history {
        let st = out.entry(tenant.clone()).or_default();
        st.changes += 1;
        match serde_json::from_value::<ModeChange>(doc) {
            Ok(c) => match (c.area, c.to) {
                (Some(a), Mode::Emergency) => {
                    st.emergency_areas.insert(a);
                }
                (Some(a), Mode::Normal) => {
                    st.emergency_areas.remove(&a);
                }
                (None, m) => st.tenant = m,
            },
            Err(e) => {
                tracing::warn!(tenant, change = key, error = %e, "an unreadable mode change")
            }
        }
    }
    Ok(out)
}

impl Hub {
    /// The tenant's mode, its areas' modes, and how they changed (oldest first).
    pub async fn mode(&self, tenant: &str) -> Modes {
        let (mode, areas) = {
            match self.desks.lock_existing(tenant).await {
                Some(d) => (
                    d.modes.tenant,
                    d.modes
                        .areas
                        .keys()
                        .map(|n| (n.clone(), d.modes.area_mode(n)))
                        .collect(),
                ),
                None => (Mode::Normal, BTreeMap::new()),
            }
        };
        let stored = self
            .store
            .docs(tenant, MODE_HISTORY)
            .unwrap_or_else(|error| {
                tracing::error!(tenant, %error, "the mode history could not be read");
                Vec::new()
            });
        let mut hist: Vec<(String, ModeChange)> = stored
            .into_iter()
            .filter_map(|(k, v)| match serde_json::from_value(v) {
                Ok(c) => Some((k, c)),
                Err(e) => {
                    tracing::warn!(tenant, change = k, error = %e, "an unreadable mode change left out of the history");
                    None
                }
            })
            .collect();
        hist.sort_by(|a, b| a.0.cmp(&b.0));
        Modes {
            mode,
            areas,
            history: hist.into_iter().map(|(_, c)| c).collect(),
        }
    }

    /// Switches the mode of the tenant (`area` none) or of one area: rules take their
    /// emergency conditions (or their normal ones back) where it applies, and new
    /// incidents there take the mode's SLA targets, routing and plans. The switch is
    /// kept with who, when and why; switching back undoes it.
    pub async fn set_mode(
        &self,
        rc: &RequestContext,
        to: Mode,
        reason: &str,
        area: Option<&str>,
    ) -> Result<ModeChange, DeskError> {
        self.allow(rc, Verb::Administer, Resource::Mode)?;
        let tenant = rc.tenant.as_str();
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(DeskError::Invalid(
                "reason: say why the mode changes".into(),
            ));
        }
        let mut d = self.desks.lock(tenant).await;
        let from = match area {
            Some(name) => {
                if !d.modes.areas.contains_key(name) {
                    return Err(DeskError::Invalid(format!(
                        "area: there is no area '{name}' (define it under /platform/v1/areas)"
                    )));
                }
                d.modes.area_mode(name)
            }
            None => d.modes.tenant,
        };
        let change = ModeChange {
            at: self.clock.now(),
            by: rc.actor(),
            area: area.map(str::to_string),
            from,
            to,
            reason: reason.to_string(),
        };
        // One write: the history entry is the switch (the modes are replayed from the
        // history at start), so the history can never show a switch that did not
        // happen, nor the mode one that it does not show.
        let n = d.modes.changes + 1;
        self.put_doc(rc, MODE_HISTORY, &format!("{n:010}"), &change)
            .await?;
        d.modes.changes = n;
        match (area, to) {
            (Some(name), Mode::Emergency) => {
                d.modes.emergency_areas.insert(name.to_string());
            }
            (Some(name), Mode::Normal) => {
                d.modes.emergency_areas.remove(name);
            }
            (None, m) => d.modes.tenant = m,
        }
        self.apply_modes(tenant, &d.modes);
        drop(d);
        tracing::warn!(tenant, area, from = ?change.from, to = ?to, reason, "mode switched");
        Ok(change)
    }

    /// The tenant's areas.
    pub async fn areas(&self, tenant: &str) -> BTreeMap<String, AreaSpec> {
        self.desks
            .read(tenant, |d| {
                d.modes
                    .areas
                    .iter()
                    .map(|(n, a)| (n.clone(), a.spec.clone()))
                    .collect()
            })
            .await
            .unwrap_or_default()
    }

    /// Defines or redefines an area (answers whether it is new). An area in emergency
    /// mode that is redefined stays in emergency with its new border.
    pub async fn put_area(
        &self,
        rc: &RequestContext,
        name: &str,
        spec: AreaSpec,
    ) -> Result<bool, DeskError> {
        self.allow(rc, Verb::Administer, Resource::Mode)?;
        let tenant = rc.tenant.as_str();
        check_area_name(name)?;
        let area = Area::compile(spec.clone()).map_err(DeskError::Invalid)?;
        let mut d = self.desks.lock(tenant).await;
        self.put_doc(rc, AREAS, name, &spec).await?;
        let created = d.modes.areas.insert(name.to_string(), area).is_none();
        if d.modes.emergency_areas.contains(name) {
            self.apply_modes(tenant, &d.modes);
        }
        Ok(created)
    }

    /// Deletes an area; one in emergency mode must be switched back first.
    pub async fn delete_area(&self, rc: &RequestContext, name: &str) -> Result<(), DeskError> {
        self.allow(rc, Verb::Administer, Resource::Mode)?;
        let tenant = rc.tenant.as_str();
        let Some(mut d) = self
            .desks
            .lock_existing(tenant)
            .await
            .filter(|d| d.modes.areas.contains_key(name))
        else {
            return Err(DeskError::NoArea(name.to_string()));
        };
        if d.modes.emergency_areas.contains(name) {
            return Err(DeskError::Conflict(format!(
                "area '{name}' is in emergency mode: switch it back to normal first"
            )));
        }
        if let Some(c) = self
            .store
            .delete_doc(tenant, AREAS, name, &rc.origin())
            .map_err(HubError::from)?
        {
            c.wait().await.map_err(HubError::from)?;
        }
        d.modes.areas.remove(name);
        Ok(())
    }

    /// The tenants in emergency mode, shared: what policy decisions read on every
    /// request (one relaxed load while no tenant is in emergency).
    pub fn emergency_flags(&self) -> std::sync::Arc<EmergencyFlags> {
        self.emergency.clone()
    }

    /// Tells the tenant's rule engine, and the flags policies read, where emergency
    /// mode holds.
    pub(crate) fn apply_modes(&self, tenant: &str, st: &ModeState) {
        let (everywhere, zones) = st.engine_view();
        self.emergency.set(tenant, st.tenant == Mode::Emergency);
        let mut tenants = self.tenants.lock();
        let t = tenants
            .entry(tenant.to_string())
            .or_insert_with(|| self.new_tenant());
        t.engine.set_emergency(everywhere, zones);
    }
}

/// The tenants in emergency mode as a whole, with a count so that the common case (none)
/// costs one relaxed atomic load and no lock.
#[derive(Debug, Default)]
pub struct EmergencyFlags {
    count: std::sync::atomic::AtomicUsize,
    tenants: parking_lot::RwLock<std::collections::HashSet<String>>,
}

impl EmergencyFlags {
    pub fn contains(&self, tenant: &str) -> bool {
        self.count.load(std::sync::atomic::Ordering::Relaxed) > 0
            && self.tenants.read().contains(tenant)
    }

    fn set(&self, tenant: &str, emergency: bool) {
        let mut t = self.tenants.write();
        if emergency {
            t.insert(tenant.to_string());
        } else {
            t.remove(tenant);
        }
        self.count
            .store(t.len(), std::sync::atomic::Ordering::Relaxed);
    }
}
