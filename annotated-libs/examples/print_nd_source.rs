fn main() { print!("{}", annotated_libs::ndarray::BACH_KERNELS.code); }
