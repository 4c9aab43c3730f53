//! The mapping file as written (TOML or YAML), before compilation. Every struct rejects
//! unknown keys so that a typo is an error naming the key, not a silently ignored line.
//! The language is documented in `docs/mappings.md`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The payload format a source delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Jsonl,
    Csv,
    Xml,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Xml => "xml",
        }
    }
}

/// One mapping file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    /// Version of the mapping language (1).
    #[serde(default = "one")]
    pub version: u32,
    /// The source name: `/ingest/{source}`, dead letters and metrics use it.
    pub source: String,
    pub format: Format,
    /// Record selector: a JSON pointer (`/vehicles`) or JSONPath (`$.vehicles[*]`) for
    /// JSON, an element path (`/reads/read`) for XML; absent for CSV and JSON Lines
    /// (every row/line is a record) and for a JSON payload that is itself one record
    /// (or an array of records).
    #[serde(default)]
    pub records: Option<String>,
    /// `@context` URL used to expand attribute and type names (default: the core context).
    #[serde(default)]
    pub context: Option<String>,
    /// Tenant the entities are written to (default: the default tenant).
    #[serde(default)]
    pub tenant: Option<String>,
    /// MQTT topic patterns this mapping handles, e.g. `city/{district}/aq/{device}`;
    /// `{name}` captures one level and makes `name` a field.
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(default)]
    pub csv: CsvSpec,
    pub entity: EntitySpec,
    /// Named values taken from each record, usable in templates as `{name}`.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSpec>,
    /// The observation time applied to every mapped attribute (`observedAt`).
    #[serde(default)]
    pub observed: Option<TimeSpec>,
    #[serde(default)]
    pub location: Option<LocationSpec>,
    #[serde(default)]
    pub attributes: Vec<AttributeSpec>,
    /// Records that do not pass every filter are skipped (counted, not dead-lettered).
    #[serde(default)]
    pub filters: Vec<FilterSpec>,
    /// Edge pre-aggregation rules (deadband, windows, downsampling).
    #[serde(default)]
    pub reduce: Vec<ReduceSpec>,
}

fn one() -> u32 {
    1
}

fn comma() -> String {
    ",".into()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSpec {
    /// One ASCII character.
    #[serde(default = "comma")]
    pub delimiter: String,
    /// Whether the first row names the columns (otherwise columns are `0`, `1`, ...).
    #[serde(default = "yes")]
    pub header: bool,
}

impl Default for CsvSpec {
    fn default() -> Self {
        Self {
            delimiter: comma(),
            header: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntitySpec {
    /// Template of the entity id, e.g. `urn:ngsi-ld:Vehicle:bus-{vehicle}`. Placeholder
    /// values are percent-encoded so that the id stays a valid URI.
    pub id: String,
    /// Entity type (a template too).
    #[serde(rename = "type")]
    pub ty: String,
}

/// Where a value comes from: a path in the record (shorthand string) or a full spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FieldSpec {
    Path(String),
    Full(FieldFull),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldFull {
    #[serde(default)]
    pub path: Option<String>,
    /// A template over other fields, e.g. `{line}-{run}`.
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// Regular expression; the first capture group (or the whole match) is kept.
    #[serde(default)]
    pub regex: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSpec {
    pub path: String,
    /// `rfc3339` (default), `unix`, `unix_ms`, `unix_us`, or a strftime pattern such as
    /// `%d/%m/%Y %H:%M:%S`.
    #[serde(default)]
    pub format: Option<String>,
    /// IANA zone (`Asia/Shanghai`) or fixed offset (`+08:00`) for times written without
    /// an offset. Default UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    /// What to do when the record has no time: `reject` (default) or `now`.
    #[serde(default)]
    pub missing: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationSpec {
    /// Attribute name (default `location`).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub lat: Option<String>,
    #[serde(default)]
    pub lon: Option<String>,
    /// A WKT `POINT`, `LINESTRING` or `POLYGON`.
    #[serde(default)]
    pub wkt: Option<String>,
    /// A GeoJSON geometry (object, or a string holding one).
    #[serde(default)]
    pub geojson: Option<String>,
    /// `required` (default false): a record without a location is rejected.
    #[serde(default)]
    pub required: bool,
}

/// How a mapped value is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// Keep JSON values as they are; text from CSV/XML becomes a number when it is one.
    #[default]
    Auto,
    Number,
    Integer,
    String,
    Boolean,
    /// A JSON structure kept as a Property value.
    Json,
    /// The value is an entity id: the attribute becomes a Relationship.
    Relationship,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeSpec {
    /// Target attribute name (a Smart Data Models name such as `speed`, `NO2`).
    pub name: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub template: Option<String>,
    /// A constant value.
    #[serde(default)]
    pub value: Option<serde_json::Value>,
    #[serde(default, rename = "type")]
    pub ty: ValueType,
    /// UN/CEFACT unit code written as `unitCode`.
    #[serde(default)]
    pub unit: Option<String>,
    /// UN/CEFACT unit of the incoming value; converted to `unit`.
    #[serde(default)]
    pub from_unit: Option<String>,
    #[serde(default)]
    pub scale: Option<f64>,
    #[serde(default)]
    pub offset: Option<f64>,
    /// Enumeration map applied to the value's text (`{"0" = "free", "1" = "occupied"}`).
    #[serde(default)]
    pub map: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub regex: Option<String>,
    /// Value used when the record has none.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// A record without this value is rejected (otherwise the attribute is left out).
    #[serde(default)]
    pub required: bool,
    #[serde(default, rename = "datasetId")]
    pub dataset_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// A path or a `{field}` name.
    pub path: String,
    #[serde(default)]
    pub equals: Option<serde_json::Value>,
    #[serde(default)]
    pub not_equals: Option<serde_json::Value>,
    #[serde(default, rename = "in")]
    pub one_of: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub matches: Option<String>,
    #[serde(default)]
    pub exists: Option<bool>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

/// One edge pre-aggregation rule for some attributes of a source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReduceSpec {
    /// Attribute names the rule applies to (`*` for every numeric attribute).
    pub attributes: Vec<String>,
    /// Report by exception: forward a value only when it moved more than this much
    /// since the last forwarded value.
    #[serde(default)]
    pub deadband: Option<f64>,
    /// The same as a fraction of the last forwarded value (0.02 = 2 %).
    #[serde(default)]
    pub deadband_percent: Option<f64>,
    /// Forward at least once per this ISO 8601 duration even without change (heartbeat).
    #[serde(default)]
    pub heartbeat: Option<String>,
    /// Tumbling window (ISO 8601 duration) whose aggregate replaces the raw values.
    #[serde(default)]
    pub window: Option<String>,
    /// `mean` (default), `min`, `max`, `last`.
    #[serde(default)]
    pub aggregate: Option<String>,
    /// Keep the first value of every such interval (ISO 8601 duration).
    #[serde(default)]
    pub downsample: Option<String>,
}
