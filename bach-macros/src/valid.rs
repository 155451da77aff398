//! The checks run before the options and signature are lowered into a spec.
//!
//! Every check pushes its errors and goes on, so that all problems are reported at
//! once; each error is spanned at the offending token.

use proc_macro2::Span;
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{FnArg, GenericParam, Signature, Type};

use crate::attr::OffloadOptions;
use crate::signature::{param_name, ungroup, FnSignature, OffloadItem, Returns};

/// Runs every check. A reference parameter without a split type is reported when
/// the split types are resolved, in `spec.rs`.
pub(crate) fn check(
    options: &OffloadOptions,
    item: &OffloadItem,
    sig: &FnSignature,
    errors: &mut Vec<syn::Error>,
) {
    // The attribute first, then the item, in source order.
    check_options(options, errors);
    check_split_overrides(options, sig, errors);
    if let Some(alloc) = &options.alloc {
        if sig.arity == 0 {
            errors.push(syn::Error::new(
                alloc.key,
                "an `alloc` function needs a parameter: the size it allocates",
            ));
        }
    }
    check_signature(&item.sig, errors);
    check_returns(options, sig, errors);
    check_attributes(item, errors);
    check_body(options, item, errors);
}

/// A fallible function spells out its error type; on a device it needs a
/// `gpu_fn` (which can return the error), not a kernel.
fn check_returns(options: &OffloadOptions, sig: &FnSignature, errors: &mut Vec<syn::Error>) {
    match &sig.returns {
        Returns::Value => {}
        Returns::ResultAlias => {
            let ret = sig.ret.as_ref().expect("a `Result` alias is a return type");
            errors.push(syn::Error::new_spanned(
                ret,
                format!(
                    "write `Result<T, E>` in full, such as `Result<T, std::io::Error>`: \
                     the alias `{}` does not name the error type, which `#[offload]` must see",
                    compact(ret)
                ),
            ));
        }
        Returns::Fallible { .. } => {
            // A kernel has no way to report `Err` for a batch; a `gpu_fn`
            // does (it returns `Error::Call`, or launches with the call's
            // host stand-in, whose `Err` is one).
            if let Some(g) = &options.gpu {
                errors.push(syn::Error::new(
                    g.key,
                    "a function returning `Result` cannot name a `gpu` kernel (a kernel cannot \
                     report the function's error): remove `gpu`, or implement it with `gpu_fn`, \
                     which can return `bach_runtime::Error::Call`",
                ));
            }
        }
    }
}

/// Attributes that cannot be copied onto both generated functions: a symbol
/// name exported twice would not link.
fn check_attributes(item: &OffloadItem, errors: &mut Vec<syn::Error>) {
    for attr in &item.attrs {
        let path = attr.path();
        let named = |n: &str| path.is_ident(n);
        let unsafe_wrapped = path.is_ident("unsafe")
            && attr.meta.require_list().is_ok_and(|l| {
                l.tokens.to_string().starts_with("no_mangle")
                    || l.tokens.to_string().starts_with("export_name")
            });
        if named("no_mangle") || named("export_name") || unsafe_wrapped {
            errors.push(syn::Error::new_spanned(
                attr,
                "offloaded functions cannot export a symbol name: the stub and the CPU function would both carry it",
            ));
        }
    }
}

/// `gpu` and `gpu_fn` are exclusive; `gpu_source` needs `gpu`; a kernel name is an
/// identifier; a `cost` is a positive number.
fn check_options(options: &OffloadOptions, errors: &mut Vec<syn::Error>) {
    if let (Some(_), Some(gpu_fn)) = (&options.gpu, &options.gpu_fn) {
        errors.push(syn::Error::new(
            gpu_fn.key,
            "`gpu` and `gpu_fn` cannot be used together: choose one",
        ));
    }
    if let (None, Some(gpu_source)) = (&options.gpu, &options.gpu_source) {
        // A `gpu` that failed to parse is not missing.
        if !options.recovered {
            errors.push(syn::Error::new(
                gpu_source.key,
                "`gpu_source` names the source of the `gpu` kernel: add `gpu = \"...\"`",
            ));
        }
    }
    if let Some(gpu) = &options.gpu {
        let lit = &gpu.value;
        let name = lit.value();
        let mut chars = name.chars();
        if name.is_empty() {
            errors.push(syn::Error::new(
                lit.span(),
                "the `gpu` kernel name cannot be empty",
            ));
        } else if chars.next().is_some_and(|c| c.is_ascii_digit())
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            errors.push(syn::Error::new(
                lit.span(),
                format!("the `gpu` kernel name `{name}` is not an identifier: use letters, digits and `_`"),
            ));
        }
    }
    if let Some(cost) = &options.cost {
        let positive = cost
            .value
            .number()
            .is_some_and(|ns| ns.is_finite() && ns > 0.0);
        if !positive {
            // Spanned from the `-` (if any) to the literal.
            errors.push(syn::Error::new_spanned(
                &cost.value,
                "`cost` is CPU nanoseconds per element: a positive number",
            ));
        }
    }
}

/// A body, or `wraps`: exactly one of them.
fn check_body(options: &OffloadOptions, item: &OffloadItem, errors: &mut Vec<syn::Error>) {
    match (&item.body, &options.wraps) {
        (Some(body), Some(_)) => errors.push(syn::Error::new(
            body.brace_token.span.open(),
            "a function with `wraps = ...` must be a bodyless declaration: remove the body",
        )),
        (None, None) => {
            let span = item.semi.map_or_else(|| item.sig.span(), |s| s.span);
            errors.push(syn::Error::new(
                span,
                "function has no body: add one, or annotate an existing function with `wraps = path`",
            ))
        }
        _ => {}
    }
}

/// How to annotate a method instead of taking `self`.
const RECEIVER_MESSAGE: &str = "offloaded functions cannot take `self`: annotate a free function \
that takes the receiver as its first parameter, such as \
`#[offload(split = ..., wraps = Model::transform)] fn transform(this: &Model, x: &X) -> Y;` \
(the `offload` documentation shows how to give lazy values the method)";

/// What the signature may not use.
fn check_signature(sig: &Signature, errors: &mut Vec<syn::Error>) {
    let mut error = |span: Span, message: &str| errors.push(syn::Error::new(span, message));
    if let Some(t) = &sig.constness {
        error(t.span, "offloaded functions cannot be `const`");
    }
    if let Some(t) = &sig.asyncness {
        error(t.span, "offloaded functions cannot be `async`");
    }
    if let Some(t) = &sig.unsafety {
        error(t.span, "offloaded functions cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        let written = match &abi.name {
            Some(name) => format!("extern {}", name.token()),
            None => "extern".to_string(),
        };
        errors.push(syn::Error::new_spanned(
            abi,
            format!("offloaded functions cannot be `{written}`"),
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            variadic,
            "offloaded functions cannot be variadic",
        ));
    }
    for param in &sig.generics.params {
        match param {
            GenericParam::Lifetime(lt) => errors.push(syn::Error::new_spanned(
                lt,
                "offloaded functions cannot have lifetime parameters",
            )),
            GenericParam::Const(c) => errors.push(syn::Error::new_spanned(
                c,
                "offloaded functions cannot have const generic parameters",
            )),
            GenericParam::Type(_) => {}
        }
    }
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(receiver) => {
                errors.push(syn::Error::new_spanned(receiver, RECEIVER_MESSAGE))
            }
            FnArg::Typed(pat_type) => {
                if param_name(&pat_type.pat).is_none() {
                    errors.push(syn::Error::new_spanned(
                        &pat_type.pat,
                        "offloaded function parameters must be plain identifiers, such as `a: &Array1<f64>`",
                    ));
                }
                check_param_type(&pat_type.ty, errors);
            }
        }
    }
    if let syn::ReturnType::Type(_, ty) = &sig.output {
        check_return_type(ty, errors);
    }
}

fn check_param_type(ty: &Type, errors: &mut Vec<syn::Error>) {
    let mut checker = TypeChecker {
        errors,
        position: Position::Param,
    };
    let Type::Reference(r) = ungroup(ty) else {
        checker.visit_type(ty);
        return;
    };
    // `&X` at the top is the parameter's kind; what it refers to is checked.
    if let Some(lt) = &r.lifetime {
        checker.visit_lifetime(lt);
    }
    checker.visit_type(&r.elem);
    let base = ungroup(&r.elem);
    let unsized_base = match base {
        Type::Slice(_) | Type::TraitObject(_) => true,
        Type::Path(p) => p.qself.is_none() && p.path.is_ident("str"),
        _ => false,
    };
    if unsized_base {
        errors.push(syn::Error::new_spanned(
            base,
            format!(
                "unsized base type `{}` is unsupported: take a sized type such as `Vec<T>` or `Array1<T>` by reference",
                compact(base)
            ),
        ));
    }
}

fn check_return_type(ty: &Type, errors: &mut Vec<syn::Error>) {
    let mut checker = TypeChecker {
        errors,
        position: Position::Return,
    };
    match ungroup(ty) {
        Type::Reference(r) => {
            checker.errors.push(syn::Error::new_spanned(
                ty,
                "offloaded functions cannot return references: return an owned value",
            ));
            checker.visit_type(&r.elem);
        }
        _ => checker.visit_type(ty),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Position {
    Param,
    Return,
}

/// Finds what a parameter or return type may not contain. It visits what lies below
/// a top-level reference: every reference it meets is nested.
struct TypeChecker<'e> {
    errors: &'e mut Vec<syn::Error>,
    position: Position,
}

impl<'ast> Visit<'ast> for TypeChecker<'_> {
    fn visit_type_impl_trait(&mut self, i: &'ast syn::TypeImplTrait) {
        let message = match self.position {
            Position::Param => {
                "offloaded functions cannot take `impl Trait` arguments: use a type parameter"
            }
            Position::Return => "offloaded functions cannot return `impl Trait`: name the type",
        };
        // One error: what is inside does not matter.
        self.errors
            .push(syn::Error::new(i.impl_token.span, message));
    }

    fn visit_type_param_bound(&mut self, i: &'ast syn::TypeParamBound) {
        // `dyn Trait + 'static` names no lifetime of the function.
        match i {
            syn::TypeParamBound::Lifetime(lt) if lt.ident == "static" => {}
            _ => visit::visit_type_param_bound(self, i),
        }
    }

    fn visit_lifetime(&mut self, i: &'ast syn::Lifetime) {
        if self.position == Position::Param {
            self.errors.push(syn::Error::new_spanned(
                i,
                "offloaded functions cannot have explicit lifetimes in parameter types",
            ));
        }
    }

    fn visit_type_reference(&mut self, i: &'ast syn::TypeReference) {
        match self.position {
            Position::Param => self.errors.push(syn::Error::new(
                i.and_token.span,
                "offloaded parameter types can only be references at the top level, as in `&T` or `&mut T`",
            )),
            Position::Return if i.mutability.is_some() => self.errors.push(
                syn::Error::new_spanned(i, "offloaded functions cannot return `&mut` references"),
            ),
            Position::Return => {}
        }
        visit::visit_type_reference(self, i);
    }

    // Function pointers and `Fn(&X)` sugar bind their own (elided) lifetimes.
    fn visit_type_bare_fn(&mut self, _: &'ast syn::TypeBareFn) {}
    fn visit_parenthesized_generic_arguments(
        &mut self,
        _: &'ast syn::ParenthesizedGenericArguments,
    ) {
    }
}

/// A type as a user would write it: `dyn std::fmt::Debug`, not `dyn std :: fmt :: Debug`.
fn compact(ty: &Type) -> String {
    let mut text = ty.to_token_stream().to_string();
    for (spaced, tight) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" < ", "<"),
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" ,", ","),
        ("& ", "&"),
        (" (", "("),
    ] {
        text = text.replace(spaced, tight);
    }
    text
}

/// Every name in `split(...)` is a parameter.
fn check_split_overrides(
    options: &OffloadOptions,
    sig: &FnSignature,
    errors: &mut Vec<syn::Error>,
) {
    let Some(overrides) = &options.split_overrides else {
        return;
    };
    for o in &overrides.value {
        if !sig.params.iter().any(|p| p.name == o.param) {
            errors.push(syn::Error::new(
                o.param.span(),
                format!("unknown parameter `{}` in `split(...)`", o.param),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use proc_macro2::TokenStream;
    use quote::quote;

    /// Every error message of `#[offload(attr)] item`, in order.
    fn errors(attr: TokenStream, item: TokenStream) -> Vec<String> {
        match crate::expand::expand(attr, item) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[track_caller]
    fn assert_errors(attr: TokenStream, item: TokenStream, expected: &[&str]) {
        assert_eq!(errors(attr, item), expected);
    }

    #[test]
    fn valid_functions_have_no_errors() {
        for (attr, item) in [
            (
                quote!(split = S),
                quote!(
                    pub fn f<T: Clone>(a: &Vec<T>, n: usize, o: &mut Vec<T>) -> Vec<T> {
                        todo!()
                    }
                ),
            ),
            (
                quote!(split = S, wraps = g),
                quote!(
                    pub fn f(a: &A) -> A;
                ),
            ),
            (
                quote!(),
                quote!(
                    fn f(n: u64) {}
                ),
            ),
            (
                quote!(),
                quote!(
                    fn f(g: fn(&f64) -> f64, h: Box<dyn Fn(&f64) -> f64>) -> Vec<&'static str> {
                        todo!()
                    }
                ),
            ),
            (
                quote!(gpu = "k_2"),
                quote!(
                    fn f() -> u32 {
                        0
                    }
                ),
            ),
            (
                quote!(gpu = "k", gpu_source = kernels::SRC),
                quote!(
                    fn f() -> u32 {
                        0
                    }
                ),
            ),
            (
                quote!(cost = 2.5),
                quote!(
                    fn f() -> u32 {
                        0
                    }
                ),
            ),
            (
                quote!(cost = 3, gpu = "k"),
                quote!(
                    fn f() -> u32 {
                        0
                    }
                ),
            ),
        ] {
            assert_errors(attr, item, &[]);
        }
    }

    #[test]
    fn gpu_and_gpu_fn_are_exclusive() {
        assert_errors(
            quote!(gpu = "add", gpu_fn = add_gpu),
            quote!(
                fn f(n: u32) -> u32 {
                    n
                }
            ),
            &["`gpu` and `gpu_fn` cannot be used together: choose one"],
        );
    }

    #[test]
    fn gpu_source_needs_gpu() {
        let item = quote!(
            fn f(n: u32) -> u32 {
                n
            }
        );
        let message = "`gpu_source` names the source of the `gpu` kernel: add `gpu = \"...\"`";
        assert_errors(quote!(gpu_source = SRC), item.clone(), &[message]);
        assert_errors(
            quote!(gpu_fn = on_device, gpu_source = SRC),
            item.clone(),
            &[message],
        );
        // A `gpu` that failed to parse is not reported missing.
        assert_errors(
            quote!(gpu = add, gpu_source = SRC),
            item,
            &["expected string literal"],
        );
    }

    #[test]
    fn gpu_kernel_names() {
        assert_errors(
            quote!(gpu = ""),
            quote!(
                fn f(n: u32) -> u32 {
                    n
                }
            ),
            &["the `gpu` kernel name cannot be empty"],
        );
        for bad in ["add-f64", "1add", "a b"] {
            assert_errors(
                quote!(gpu = #bad),
                quote!(fn f(n: u32) -> u32 { n }),
                &[&format!("the `gpu` kernel name `{bad}` is not an identifier: use letters, digits and `_`")],
            );
        }
    }

    #[test]
    fn cost_is_a_positive_number() {
        let item = quote!(
            fn f(n: u32) -> u32 {
                n
            }
        );
        let message = "`cost` is CPU nanoseconds per element: a positive number";
        for bad in [
            quote!(cost = -1.0),
            quote!(cost = -3),
            quote!(cost = 0),
            quote!(cost = 0.0),
            quote!(cost = 1e400),
            quote!(cost = "fast"),
            quote!(cost = 'c'),
            quote!(cost = true),
        ] {
            assert_errors(bad, item.clone(), &[message]);
        }
        for good in [quote!(cost = 1e-3), quote!(cost = 7), quote!(cost = 2.5f64)] {
            assert_errors(good, item.clone(), &[]);
        }
        // A duplicate is reported once; the first value is checked.
        assert_errors(
            quote!(cost = -1.0, cost = 2.0),
            item,
            &["duplicate option `cost`", message],
        );
    }

    #[test]
    fn body_and_wraps() {
        assert_errors(
            quote!(wraps = g),
            quote!(
                fn f(n: u32) -> u32 {
                    n
                }
            ),
            &["a function with `wraps = ...` must be a bodyless declaration: remove the body"],
        );
        assert_errors(
            quote!(),
            quote!(fn f(n: u32) -> u32;),
            &["function has no body: add one, or annotate an existing function with `wraps = path`"],
        );
    }

    #[test]
    fn qualifiers() {
        assert_errors(
            quote!(),
            quote!(
                const fn f(n: u32) -> u32 {
                    n
                }
            ),
            &["offloaded functions cannot be `const`"],
        );
        assert_errors(
            quote!(),
            quote!(
                async fn f(n: u32) -> u32 {
                    n
                }
            ),
            &["offloaded functions cannot be `async`"],
        );
        assert_errors(
            quote!(),
            quote!(
                unsafe fn f(n: u32) -> u32 {
                    n
                }
            ),
            &["offloaded functions cannot be `unsafe`"],
        );
        assert_errors(
            quote!(),
            quote!(
                extern "C" fn f(n: u32) -> u32 {
                    n
                }
            ),
            &["offloaded functions cannot be `extern \"C\"`"],
        );
        // Braces: rustfmt would write `extern "C"`.
        assert_errors(
            quote!(),
            quote! { extern fn f(n: u32) -> u32 { n } },
            &["offloaded functions cannot be `extern`"],
        );
    }

    #[test]
    fn variadics() {
        assert_errors(
            quote!(),
            quote!(
                fn f(n: u32, ...) -> u32 {
                    n
                }
            ),
            &["offloaded functions cannot be variadic"],
        );
    }

    #[test]
    fn fallible_functions() {
        let fallible = quote!(
            fn f(a: &A) -> Result<A, E> {
                todo!()
            }
        );
        assert_errors(quote!(split = S), fallible.clone(), &[]);
        assert_errors(
            quote!(split = S, gpu = "k"),
            fallible.clone(),
            &["a function returning `Result` cannot name a `gpu` kernel (a kernel cannot report the function's error): remove `gpu`, or implement it with `gpu_fn`, which can return `bach_runtime::Error::Call`"],
        );
        // A device function can report the error.
        assert_errors(quote!(split = S, gpu_fn = on_device), fallible, &[]);
        assert_errors(
            quote!(split = S),
            quote!(
                fn f(a: &A) -> io::Result<A> {
                    todo!()
                }
            ),
            &["write `Result<T, E>` in full, such as `Result<T, std::io::Error>`: the alias `io::Result<A>` does not name the error type, which `#[offload]` must see"],
        );
        // A reference in the `Ok` type is a reference returned.
        assert_errors(
            quote!(split = S),
            quote!(
                fn f(a: &A) -> Result<&mut A, E> {
                    todo!()
                }
            ),
            &["offloaded functions cannot return `&mut` references"],
        );
    }

    #[test]
    fn receivers_and_patterns() {
        assert_errors(
            quote!(split = S),
            quote!(
                fn f(&self, n: u32) -> u32 {
                    n
                }
            ),
            &[super::RECEIVER_MESSAGE],
        );
        for pat in [quote!((x, y)), quote!(_), quote!(ref x), quote!(x @ 1..=3)] {
            assert_errors(
                quote!(),
                quote!(fn f(#pat: u32) -> u32 { 0 }),
                &["offloaded function parameters must be plain identifiers, such as `a: &Array1<f64>`"],
            );
        }
    }

    #[test]
    fn impl_trait() {
        assert_errors(
            quote!(),
            quote!(
                fn f(n: impl Copy) -> u32 {
                    0
                }
            ),
            &["offloaded functions cannot take `impl Trait` arguments: use a type parameter"],
        );
        assert_errors(
            quote!(split = S),
            quote!(
                fn f(n: &Vec<impl Copy>) -> u32 {
                    0
                }
            ),
            &["offloaded functions cannot take `impl Trait` arguments: use a type parameter"],
        );
        assert_errors(
            quote!(),
            quote!(
                fn f(n: u32) -> impl Copy {
                    n
                }
            ),
            &["offloaded functions cannot return `impl Trait`: name the type"],
        );
        // One error for the whole `impl Trait`, whatever it contains.
        assert_errors(
            quote!(),
            quote!(
                fn f(n: impl Into<u32> + 'static) -> u32 {
                    0
                }
            ),
            &["offloaded functions cannot take `impl Trait` arguments: use a type parameter"],
        );
    }

    #[test]
    fn lifetimes() {
        assert_errors(
            quote!(split = S),
            quote!(
                fn f<'a>(a: &A) -> A {
                    todo!()
                }
            ),
            &["offloaded functions cannot have lifetime parameters"],
        );
        assert_errors(
            quote!(split = S),
            quote!(
                fn f(a: &'static A) -> A {
                    todo!()
                }
            ),
            &["offloaded functions cannot have explicit lifetimes in parameter types"],
        );
        assert_errors(
            quote!(),
            quote!(
                fn f(a: Cow<'static, str>) -> A {
                    todo!()
                }
            ),
            &["offloaded functions cannot have explicit lifetimes in parameter types"],
        );
        // A `'static` bound of a trait object names no lifetime of the function.
        assert_errors(
            quote!(),
            quote!(
                fn f(g: Box<dyn Fn(u8) -> u8 + Send + 'static>) -> u8 {
                    0
                }
            ),
            &[],
        );
    }

    #[test]
    fn const_generics() {
        assert_errors(
            quote!(),
            quote!(
                fn f<const N: usize>(a: [f64; N]) -> f64 {
                    0.0
                }
            ),
            &["offloaded functions cannot have const generic parameters"],
        );
    }

    #[test]
    fn references_in_the_return_type() {
        assert_errors(
            quote!(split = S),
            quote!(
                fn f(a: &A) -> &A {
                    a
                }
            ),
            &["offloaded functions cannot return references: return an owned value"],
        );
        assert_errors(
            quote!(split = S),
            quote!(
                fn f(a: &mut A) -> &mut A {
                    a
                }
            ),
            &["offloaded functions cannot return references: return an owned value"],
        );
        assert_errors(
            quote!(),
            quote!(
                fn f(n: u32) -> Option<&'static mut A> {
                    None
                }
            ),
            &["offloaded functions cannot return `&mut` references"],
        );
    }

    #[test]
    fn nested_references_in_parameters() {
        assert_errors(
            quote!(),
            quote!(fn f(a: Option<&A>) -> u32 { 0 }),
            &["offloaded parameter types can only be references at the top level, as in `&T` or `&mut T`"],
        );
        assert_errors(
            quote!(split = S),
            quote!(fn f(a: &&A) -> u32 { 0 }),
            &["offloaded parameter types can only be references at the top level, as in `&T` or `&mut T`"],
        );
    }

    #[test]
    fn unsized_base_types() {
        for (ty, shown) in [
            (quote!(&[f64]), "[f64]"),
            (quote!(&mut [T]), "[T]"),
            (quote!(&str), "str"),
            (quote!(&dyn std::fmt::Display), "dyn std::fmt::Display"),
            (
                quote!(&(dyn Fn(&Vec<T>) -> u8 + Send)),
                "dyn Fn(&Vec<T>) -> u8 + Send",
            ),
        ] {
            assert_errors(
                quote!(split = S),
                quote!(fn f<T>(a: #ty) -> u32 { 0 }),
                &[&format!(
                    "unsized base type `{shown}` is unsupported: take a sized type such as `Vec<T>` or `Array1<T>` by reference"
                )],
            );
        }
    }

    #[test]
    fn unknown_split_parameter() {
        assert_errors(
            quote!(split(a = S, c = S)),
            quote!(
                fn f(a: &A, b: u32) -> A {
                    todo!()
                }
            ),
            &["unknown parameter `c` in `split(...)`"],
        );
    }

    #[test]
    fn missing_split_types() {
        assert_errors(
            quote!(gpu = "f"),
            quote!(
                fn f(a: &A, n: u32, out: &mut A) -> A {
                    todo!()
                }
            ),
            &[
                "no split type for `a`: add `split = ...` or `split(a = ...)`",
                "no split type for `out`: add `split = ...` or `split(out = ...)`",
            ],
        );
        // An override is enough; so is the default.
        assert_errors(
            quote!(split(a = S, out = S)),
            quote!(
                fn f(a: &A, out: &mut A) {}
            ),
            &[],
        );
    }

    #[test]
    fn no_missing_split_errors_after_a_syntax_error() {
        assert_errors(
            quote!(split = 3),
            quote!(
                fn f(a: &A) -> A {
                    todo!()
                }
            ),
            &["expected identifier"],
        );
    }

    #[test]
    fn alloc_needs_a_parameter() {
        assert_errors(
            quote!(alloc),
            quote!(
                fn f() -> Vec<f64> {
                    vec![]
                }
            ),
            &["an `alloc` function needs a parameter: the size it allocates"],
        );
    }

    #[test]
    fn all_errors_at_once() {
        assert_errors(
            quote!(split(c = S), speed = 1, gpu = "", gpu = "x", alloc),
            quote!(pub async unsafe fn f<'a, const N: usize>(a: &'a [f64], (x, y): (u32, u32)) -> &'a mut A { todo!() }),
            &[
                "expected one of: `split`, `ret`, `gpu`, `gpu_fn`, `gpu_source`, `alloc`, `unsplittable`, `wraps`, `cost`",
                "duplicate option `gpu`",
                "the `gpu` kernel name cannot be empty",
                "unknown parameter `c` in `split(...)`",
                "offloaded functions cannot be `async`",
                "offloaded functions cannot be `unsafe`",
                "offloaded functions cannot have lifetime parameters",
                "offloaded functions cannot have const generic parameters",
                "offloaded functions cannot have explicit lifetimes in parameter types",
                "unsized base type `[f64]` is unsupported: take a sized type such as `Vec<T>` or `Array1<T>` by reference",
                "offloaded function parameters must be plain identifiers, such as `a: &Array1<f64>`",
                "offloaded functions cannot return references: return an owned value",
            ],
        );
    }
}

#[cfg(test)]
mod attribute_tests {
    use super::*;
    use quote::quote;

    #[test]
    fn exported_symbol_names_are_rejected() {
        for attr in [
            quote!(#[no_mangle]),
            quote!(#[export_name = "f"]),
            quote!(#[unsafe(no_mangle)]),
        ] {
            let item: OffloadItem =
                syn::parse2(quote! { #attr pub fn f(a: &A) -> A { a.clone() } }).unwrap();
            let mut errors = Vec::new();
            check_attributes(&item, &mut errors);
            assert_eq!(errors.len(), 1, "{attr}");
            assert!(errors[0]
                .to_string()
                .contains("cannot export a symbol name"));
        }
    }
}
