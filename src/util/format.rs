//! Numbers written as Python writes them, so files and tables match ultralytics'.

/// Python's `'%g' % x`: 6 significant digits, trailing zeros dropped, exponent notation
/// below 1e-4 and from 1e6.
pub fn format_g(x: f64) -> String {
    format_general(x, 6)
}

/// Python's `'%.{significant}g' % x`.
pub fn format_general(x: f64, significant: usize) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let p = significant.max(1);
    let scientific = format!("{x:.*e}", p - 1);
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..p as i32).contains(&exponent) {
        let decimals = (p as i32 - 1 - exponent) as usize;
        trim_zeros(&format!("{x:.decimals$}")).to_string()
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim_zeros(mantissa), exponent.abs())
    }
}

fn trim_zeros(number: &str) -> &str {
    if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        number
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_g_matches_python() {
        let cases = [
            (0.0, "0"),
            (2.0, "2"),
            (0.5, "0.5"),
            (0.123456789, "0.123457"),
            (0.0001, "0.0001"),
            (0.00001234567, "1.23457e-05"),
            (123456.0, "123456"),
            (1234567.0, "1.23457e+06"),
            (999999.5, "1e+06"),
            (-0.25, "-0.25"),
            (f64::from(0.1f32), "0.1"),
        ];
        for (x, want) in cases {
            assert_eq!(format_g(x), want, "{x}");
        }
    }
}
