//! The figures of one benchmark run, written as JSON to `target/bench/NAME.json` so that two runs
//! can be compared (`scripts/bench.sh` prints the ratios of every file as one table).

use std::path::Path;

/// Named figures with their units, in the order they were measured.
#[derive(Default)]
pub struct Results(Vec<(String, f64, String)>);

impl Results {
    /// Adds a figure. Names starting with `ratio.` are same-run ratios (the table's rows).
    pub fn add(&mut self, name: &str, value: f64, unit: &str) {
        self.0.push((name.into(), value, unit.into()));
    }

    /// Writes `target/bench/NAME.json`: the figures, the time, the CPU count and the load
    /// average at the end of the run (a loaded machine makes wall-clock figures pessimistic).
    pub fn write(&self, name: &str) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        std::fs::create_dir_all(&dir).unwrap();
        let figures: serde_json::Map<String, serde_json::Value> = self
            .0
            .iter()
            .map(|(key, value, unit)| (key.clone(), serde_json::json!({ "value": value, "unit": unit })))
            .collect();
        let json = serde_json::json!({
            "bench": name,
            "unix_time": time::OffsetDateTime::now_utc().unix_timestamp(),
            "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "load_average": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
            "figures": figures,
        });
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
        println!("\n(figures written to {})", path.display());
    }
}
