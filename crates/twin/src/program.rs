//! Reading TraCI's answers about signal programs.

use crate::signal::Phase;
use crate::traci::Value;

/// The phases of program `program` in a `TL_COMPLETE_DEFINITION_RYG` answer.
pub fn phases_of(logics: &Value, program: &str) -> Result<Vec<Phase>, String> {
    let bad = |what: &str| format!("unexpected program definition: {what}");
    let logics = logics.as_compound().ok_or_else(|| bad("not a compound"))?;
    let mut first = None;
    for logic in logics {
        let l = logic.as_compound().ok_or_else(|| bad("logic"))?;
        let [id, _kind, _current, phases, ..] = l else {
            return Err(bad("logic fields"));
        };
        let mut out = Vec::new();
        for p in phases.as_compound().ok_or_else(|| bad("phases"))? {
            let f = p.as_compound().ok_or_else(|| bad("phase"))?;
            let num = |i: usize| {
                f.get(i)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| bad("phase number"))
            };
            out.push(Phase {
                duration: num(0)?,
                state: f
                    .get(1)
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("phase state"))?
                    .to_string(),
                min_dur: num(2)?,
                max_dur: num(3)?,
            });
        }
        if id.as_str() == Some(program) {
            return Ok(out);
        }
        first.get_or_insert(out);
    }
    first.ok_or_else(|| bad("no logic"))
}

/// Per link index, (incoming lane, outgoing lane), from a `TL_CONTROLLED_LINKS` answer.
pub fn links_of(v: &Value) -> Result<Vec<Vec<(String, String)>>, String> {
    let bad = |what: &str| format!("unexpected controlled links: {what}");
    let items = v.as_compound().ok_or_else(|| bad("not a compound"))?;
    let mut it = items.iter();
    let n = it
        .next()
        .and_then(Value::as_i32)
        .ok_or_else(|| bad("count"))?;
    let mut out = Vec::new();
    for _ in 0..n {
        let k = it
            .next()
            .and_then(Value::as_i32)
            .ok_or_else(|| bad("links of a signal"))?;
        let mut links = Vec::new();
        for _ in 0..k {
            let l = it
                .next()
                .and_then(Value::as_list)
                .ok_or_else(|| bad("link"))?;
            if let [from, to, ..] = l {
                links.push((from.clone(), to.clone()));
            }
        }
        out.push(links);
    }
    Ok(out)
}
