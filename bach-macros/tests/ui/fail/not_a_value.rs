use bach_runtime::offload;
use std::rc::Rc;

// Graph values cross threads: an `Rc` cannot be an argument or a result.
#[offload]
pub fn count(n: Rc<u64>) -> Rc<u64> {
    n
}

fn main() {}
