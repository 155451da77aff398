/// Great-circle distance in miles from a fixed point (lat 0.70984286,
/// lon 1.23892197, radians) to each (`lat2`, `lon2`), as in the paper's benchmark.
pub fn haversine<'a>(lat2: &'a ndarray::Array1<f64>, lon2: &'a ndarray::Array1<f64>) -> np::Array<'a, f64> {
    let lat1 = 0.70984286;
    let lon1 = 1.23892197;
    let miles = 3959.0;

    let dlat = np::square(&np::sin(&np::divide_scalar(&np::subtract_scalar(lat2, lat1), 2.0)));
    let dlon = np::square(&np::sin(&np::divide_scalar(&np::subtract_scalar(lon2, lon1), 2.0)));
    let a = np::add(&dlat, &np::multiply(&np::multiply_scalar(&np::cos(lat2), f64::cos(lat1)), &dlon));
    np::multiply_scalar(&np::scalar_multiply(2.0, &np::arcsin(&np::sqrt(&a))), miles)
}
