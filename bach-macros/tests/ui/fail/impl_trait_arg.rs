use bach_runtime::offload;

#[offload]
pub fn show(n: impl std::fmt::Display + Clone + Send + Sync + 'static) -> String {
    n.to_string()
}

fn main() {}
