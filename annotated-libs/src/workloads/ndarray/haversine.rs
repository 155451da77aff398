/// Great-circle distance in miles from a fixed point (lat 0.70984286,
/// lon 1.23892197, radians) to each (`lat2`, `lon2`), as in the paper's benchmark.
pub fn haversine<'a>(lat2: &Array1<'a, f64>, lon2: &Array1<'a, f64>) -> Array1<'a, f64> {
    let lat1 = 0.70984286;
    let lon1 = 1.23892197;
    let miles = 3959.0;

    let dlat = ((lat2 - lat1) / 2.0).sin().pow2();
    let dlon = ((lon2 - lon1) / 2.0).sin().pow2();
    let a = dlat + lat2.cos() * f64::cos(lat1) * dlon;
    a.sqrt().asin() * 2.0 * miles
}
