/// Standardizes the columns of `x` in place, as NumPy's
/// `X -= X.mean(axis=0); X /= X.std(axis=0)` does: zero mean and unit
/// population standard deviation (`ddof = 0`) per column. A column with zero
/// variance becomes NaN (0/0), as in NumPy.
pub fn standardize<'a>(x: &mut Array2<'a, f64>) {
    let mean = x.mean_axis(Axis(0)).unwrap();
    *x -= &mean;
    let sd = x.std_axis(Axis(0), 0.0);
    *x /= &sd;
}
