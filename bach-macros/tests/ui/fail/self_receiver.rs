use bach_runtime::offload;

pub struct Counter(u64);

impl Counter {
    #[offload]
    pub fn get(&self) -> u64 {
        self.0
    }
}

fn main() {}
