use bach_runtime::offload;

#[offload(split = bach_runtime::Broadcast)]
pub fn slice(a: &[f64]) -> f64 {
    a[0]
}

#[offload(split = bach_runtime::Broadcast)]
pub fn string(s: &str) -> usize {
    s.len()
}

#[offload(split = bach_runtime::Broadcast)]
pub fn object(d: &dyn std::fmt::Debug) -> String {
    format!("{d:?}")
}

fn main() {}
