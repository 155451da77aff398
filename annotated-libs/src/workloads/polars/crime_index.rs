/// The paper's crime index over three columns: total population `tp`, adult
/// population `ap` and number of robberies `nr`, row by row; the sum of the
/// per-row indices:
///
/// ```text
/// big = tp.mask(tp > 500000, 0.0)
/// ci = (ap * 2 + big - nr * 2000.0) / 100000
/// ci = ci.mask(ci > 0.02, 0.032)
/// ci = ci.mask(ci < 0.01, 0.005)
/// result = ci.sum()
/// ```
pub fn crime_index<'a>(
    tp: &LazySeries<'a>,
    ap: &LazySeries<'a>,
    nr: &LazySeries<'a>,
) -> LazySum<'a> {
    let big = tp.mask(&tp.gt(500000.0), 0.0);
    let ci = (&(ap * 2.0) + &big - nr * 2000.0) / 100000.0;
    let ci = ci.mask(&ci.gt(0.02), 0.032);
    let ci = ci.mask(&ci.lt(0.01), 0.005);
    ci.total()
}
