//! The op table: every elementwise operation of the ndarray module, written once.
//!
//! Each `*_ops!` macro below holds one group of operations and hands its rows to a
//! generator macro (`$gen`), in the manner of candle's op macros. The generators
//! (in `cpu.rs`, `ops.rs`, `kernels.rs`, `methods.rs`, `operators.rs`, `eager.rs`
//! and `host_checks.rs`) turn the same rows into:
//!
//! - the CPU function an annotation wraps: ndarray's own implementation where
//!   ndarray has one (`a.sqrt()`, `&a + &b`), so the CPU result is ndarray's;
//! - the `#[offload]` annotation of that function (`ops.rs`);
//! - one line of the CUDA source: the op's device element function and its entry
//!   points (the families are in `kernels/ndarray.cuh`);
//! - the lazy array's method or operator, and the eager extension method for
//!   operations ndarray lacks;
//! - the host check that runs the kernel as host C++ against the CPU function.
//!
//! A new operation is one row here (and nothing else) when it fits a group.
//!
//! Rows give the operation's name, its kernel name(s) as string literals (an
//! attribute cannot build a string), and its device arithmetic as a C expression in
//! parentheses over the element `x` (the second operand `y`; parameters `p`, `q`;
//! `T` is the element type).

/// Unary float operations that ndarray defines as methods of float arrays (its CPU
/// function is `a.op()`, ndarray's own).
macro_rules! ndarray_unary_ops {
    ($gen:ident) => {
        $gen! {
            floor "floor" "(floor(x))" "Rounds down each element (`f64::floor`).";
            ceil "ceil" "(ceil(x))" "Rounds up each element (`f64::ceil`).";
            round "round" "(round(x))" "Rounds each element to the nearest integer, half away from zero (`f64::round`).";
            trunc "trunc" "(trunc(x))" "The integer part of each element (`f64::trunc`).";
            fract "fract" "(x - trunc(x))" "The fractional part of each element (`f64::fract`).";
            abs "abs" "(fabs(x))" "The absolute value of each element.";
            signum "signum" "(bach_signum(x))" "The sign of each element: 1 or -1 with the sign of the element (-0 gives -1), NaN for NaN (`f64::signum`).";
            recip "recip" "((T)1 / x)" "The reciprocal `1 / x` of each element.";
            sqrt "sqrt" "(sqrt(x))" "The square root of each element (NaN for negative elements).";
            exp "exp" "(exp(x))" "`e^x` of each element.";
            exp2 "exp2" "(exp2(x))" "`2^x` of each element.";
            ln "ln" "(log(x))" "The natural logarithm of each element (`-inf` at 0, NaN below).";
            log2 "log2" "(log2(x))" "The base-2 logarithm of each element.";
            log10 "log10" "(log10(x))" "The base-10 logarithm of each element.";
            cbrt "cbrt" "(cbrt(x))" "The cube root of each element.";
            sin "sin" "(sin(x))" "The sine of each element (radians).";
            cos "cos" "(cos(x))" "The cosine of each element (radians).";
            tan "tan" "(tan(x))" "The tangent of each element (radians).";
            pow2 "pow2" "(x * x)" "The square `x * x` of each element.";
        }
    };
}

/// Unary float operations ndarray has no method for (users write `a.mapv(f64::asin)`):
/// the CPU function maps the element type's own method, and the eager extension
/// trait gives plain ndarray arrays the same method.
macro_rules! mapped_unary_ops {
    ($gen:ident) => {
        $gen! {
            asin "asin" "(asin(x))" "The arcsine of each element (NaN outside [-1, 1]; NumPy `arcsin`).";
            acos "acos" "(acos(x))" "The arccosine of each element (NaN outside [-1, 1]; NumPy `arccos`).";
            atan "atan" "(atan(x))" "The arctangent of each element (NumPy `arctan`).";
            sinh "sinh" "(sinh(x))" "The hyperbolic sine of each element.";
            cosh "cosh" "(cosh(x))" "The hyperbolic cosine of each element.";
            tanh "tanh" "(tanh(x))" "The hyperbolic tangent of each element.";
            exp_m1 "exp_m1" "(expm1(x))" "`e^x - 1` of each element, accurate near 0 (NumPy `expm1`).";
            ln_1p "ln_1p" "(log1p(x))" "`ln(1 + x)` of each element, accurate near 0 (NumPy `log1p`).";
            erf "erf" "(erf(x))" "The error function of each element (NumPy/SciPy `erf`).";
        }
    };
}

/// Float operations with scalar parameters that ndarray defines as methods
/// (`a.powi(n)`): name, parameters with their types, kernel, the C types of the
/// parameters for f32 and f64 (`T` both ways for element-typed parameters), and the
/// device expression.
macro_rules! ndarray_param_ops {
    ($gen:ident) => {
        $gen! {
            powi (p: i32) "powi" [int, int] "(bach_powi(x, p))" "Each element to the integer power `p` (`f64::powi`).";
            powf (p: T) "powf" [float, double] "(pow(x, p))" "Each element to the power `p` (`f64::powf`).";
            log (p: T) "log" [float, double] "(log(x) / log(p))" "The logarithm of each element in base `p` (`f64::log`: `ln(x) / ln(p)`).";
        }
    };
}

/// Arithmetic operators: name (of the CPU function and the kernel), Rust operator
/// and its traits, kernel names for array-array, array-scalar and scalar-array,
/// and the device expression.
macro_rules! arithmetic_ops {
    ($gen:ident) => {
        $gen! {
            add + Add add AddAssign add_assign ["add", "add_scalar", "scalar_add"] "(x + y)";
            sub - Sub sub SubAssign sub_assign ["sub", "sub_scalar", "scalar_sub"] "(x - y)";
            mul * Mul mul MulAssign mul_assign ["mul", "mul_scalar", "scalar_mul"] "(x * y)";
            div / Div div DivAssign div_assign ["div", "div_scalar", "scalar_div"] "(x / y)";
            rem % Rem rem RemAssign rem_assign ["rem", "rem_scalar", "scalar_rem"] "(fmod(x, y))";
        }
    };
}

/// Elementwise comparisons giving masks: the method's name (NumPy's), the Rust
/// operator, kernel names for array-array and array-scalar, the device expression.
/// Comparisons with NaN are false, except `not_equal`, which is true.
macro_rules! comparison_ops {
    ($gen:ident) => {
        $gen! {
            greater > ["greater", "greater_scalar"] "(x > y)";
            greater_equal >= ["greater_equal", "greater_equal_scalar"] "(x >= y)";
            less < ["less", "less_scalar"] "(x < y)";
            less_equal <= ["less_equal", "less_equal_scalar"] "(x <= y)";
            equal == ["equal", "equal_scalar"] "(x == y)";
            not_equal != ["not_equal", "not_equal_scalar"] "(x != y)";
        }
    };
}

/// Logical operators on masks: name, Rust operator and its traits, kernel, device
/// expression.
macro_rules! logical_ops {
    ($gen:ident) => {
        $gen! {
            and & BitAnd bitand BitAndAssign bitand_assign "and" "(x && y)";
            or | BitOr bitor BitOrAssign bitor_assign "or" "(x || y)";
            xor ^ BitXor bitxor BitXorAssign bitxor_assign "xor" "(x != y)";
        }
    };
}

pub(crate) use {
    arithmetic_ops, comparison_ops, logical_ops, mapped_unary_ops, ndarray_param_ops,
    ndarray_unary_ops,
};
