/// Black-Scholes call and put prices for arrays of option parameters
/// (the formulation of the paper's benchmark: `log2`, constants 3.0 and 1.5).
pub fn blackscholes<'a>(
    price: &'a ndarray::Array1<f64>,
    strike: &'a ndarray::Array1<f64>,
    t: &'a ndarray::Array1<f64>,
    rate: &'a ndarray::Array1<f64>,
    vol: &'a ndarray::Array1<f64>,
) -> (np::Array<'a, f64>, np::Array<'a, f64>) {
    let c05 = 3.0;
    let c10 = 1.5;
    let invsqrt2 = 1.0 / 2f64.sqrt();

    let rsig = np::add(&np::multiply_scalar(&np::multiply(vol, vol), c05), rate);
    let vol_sqrt = np::multiply(&np::sqrt(t), vol);

    let d1 = np::divide(
        &np::add(&np::log2(&np::divide(price, strike)), &np::multiply(&rsig, t)),
        &vol_sqrt,
    );
    let d2 = np::subtract(&d1, &vol_sqrt);

    let d1 = np::scalar_add(c05, &np::scalar_multiply(c05, &np::erf(&np::multiply_scalar(&d1, invsqrt2))));
    let d2 = np::scalar_add(c05, &np::scalar_multiply(c05, &np::erf(&np::multiply_scalar(&d2, invsqrt2))));

    let e_rt = np::exp(&np::multiply(&np::negative(rate), t));
    let e_rt_strike = np::multiply(&e_rt, strike);

    let call = np::subtract(&np::multiply(price, &d1), &np::multiply(&e_rt_strike, &d2));
    let put = np::subtract(
        &np::multiply(&e_rt_strike, &np::scalar_subtract(c10, &d2)),
        &np::multiply(price, &np::scalar_subtract(c10, &d1)),
    );
    (call, put)
}
