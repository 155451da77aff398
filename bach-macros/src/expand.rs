//! Code generation for `#[offload]`: the pipeline's last step, which writes an
//! [`OffloadSpec`] out as tokens and decides nothing about the annotation.
//!
//! An annotated function `f` becomes three items:
//!
//! 1. `__bach_cpu_f`, the CPU implementation (the body, or a call of the `wraps` path),
//!    hidden from the docs;
//! 2. `mod f { pub use super::__bach_cpu_f as cpu; }`, so that `f::cpu` names it;
//! 3. the stub `f`, which records a call in Bach's task graph and returns a `Lazy`.
//!
//! On any error, the user's function is emitted unchanged beside the errors
//! (`fallback.rs`).

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{GenericParam, Ident, Lifetime, LifetimeParam, LitStr, Visibility};

use crate::fallback;
use crate::spec::{CpuBody, Mode, OffloadSpec};

/// Expands `#[offload(attr)] item`.
pub fn offload(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr, item.clone()) {
        Ok(tokens) => tokens,
        Err(errors) => fallback::expand(item, errors),
    }
}

/// The expansion, or every error found.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> Result<TokenStream, Vec<syn::Error>> {
    OffloadSpec::from_tokens(attr, item).map(|spec| generate(&spec))
}

/// The three items of the expansion.
fn generate(spec: &OffloadSpec) -> TokenStream {
    let cpu_name = format_ident!(
        "__bach_cpu_{}",
        spec.name.unraw().to_string(),
        span = spec.name.span()
    );
    let cpu_fn = cpu_fn(spec, &cpu_name);
    let module = module(spec, &cpu_name);
    let stub = stub(spec, &cpu_name);
    quote! {
        #cpu_fn
        #module
        #stub
    }
}

/// Item 1, the CPU implementation: every attribute but the docs, and hidden.
fn cpu_fn(spec: &OffloadSpec, cpu_name: &Ident) -> TokenStream {
    let OffloadSpec { vis, attrs, .. } = spec;
    let mut sig = spec.sig.clone();
    sig.ident = cpu_name.clone();
    let body = match &spec.body {
        CpuBody::Block(block) => block.to_token_stream(),
        CpuBody::Wraps(path) => {
            // The parameters get names of our own, so that a parameter named
            // like the wrapped function cannot shadow it in the call.
            let mut args = Vec::new();
            for (i, input) in sig.inputs.iter_mut().enumerate() {
                if let syn::FnArg::Typed(pt) = input {
                    if let syn::Pat::Ident(pi) = &mut *pt.pat {
                        pi.ident = format_ident!("__bach_arg{}", i, span = Span::mixed_site());
                        args.push(pi.ident.clone());
                    }
                }
            }
            quote_spanned!(path.span()=> { #path(#(#args),*) })
        }
    };
    quote! {
        #(#attrs)*
        #[doc(hidden)]
        #vis #sig #body
    }
}

/// Item 2, the companion module, so that `f::cpu` names the CPU implementation; it
/// carries the function's `cfg` attributes only.
fn module(spec: &OffloadSpec, cpu_name: &Ident) -> TokenStream {
    let OffloadSpec { name, vis, .. } = spec;
    let name_str = name.unraw().to_string();
    let cfgs = spec.attrs.iter().filter(|a| a.path().is_ident("cfg"));
    let doc = format!("The CPU implementation of [`{name_str}`](fn@{name_str}).");
    let use_vis = nested_visibility(vis);
    quote! {
        #(#cfgs)*
        #[doc = #doc]
        #vis mod #name {
            #[doc(inline)]
            #[allow(unused_imports, deprecated)]
            #use_vis use super::#cpu_name as cpu;
        }
    }
}

/// The visibility, seen from a module one level down: what the `use` in the companion
/// module needs so that `f::cpu` is visible wherever `f` is.
fn nested_visibility(vis: &Visibility) -> TokenStream {
    match vis {
        Visibility::Public(_) => vis.to_token_stream(),
        Visibility::Inherited => quote!(pub(super)),
        Visibility::Restricted(r) => {
            let path = &r.path;
            let first = path.segments.first().map(|s| s.ident.to_string());
            match first.as_deref() {
                _ if path.leading_colon.is_some() => vis.to_token_stream(),
                Some("crate") => vis.to_token_stream(),
                Some("self") => {
                    let rest = path.segments.iter().skip(1);
                    quote!(pub(in super #(::#rest)*))
                }
                _ => quote!(pub(in super::#path)),
            }
        }
    }
}

/// Item 3, the stub: records the call with its `OpInfo`, a split type per argument and
/// output and the CPU body as a closure over `Args`, and returns a `Lazy`.
fn stub(spec: &OffloadSpec, cpu_name: &Ident) -> TokenStream {
    let OffloadSpec {
        name,
        vis,
        docs,
        attrs,
        ret,
        op,
        ..
    } = spec;
    let name_str = name.unraw().to_string();
    // Internal names cannot clash with the user's parameters.
    let call = Ident::new("__call", Span::mixed_site());
    let rec = Ident::new("__rec", Span::mixed_site());
    let args = Ident::new("__args", Span::mixed_site());
    let ret_var = Ident::new("__ret", Span::mixed_site());
    let lt = Lifetime::new("'__bach", Span::call_site());

    let mut generics = spec.sig.generics.clone();
    generics
        .params
        .insert(0, GenericParam::Lifetime(LifetimeParam::new(lt.clone())));
    let where_clause = generics.where_clause.take();

    let params = spec.params.iter().map(|p| {
        let (name, base) = (&p.name, &p.base);
        match p.mode {
            Mode::Owned | Mode::Borrowed => {
                quote_spanned!(p.ty_span=> #name: impl ::bach_runtime::IntoArg<#lt, #base>)
            }
            Mode::Mutated => {
                quote_spanned!(p.ty_span=> #name: &mut ::bach_runtime::Lazy<#lt, #base>)
            }
        }
    });

    // `OpInfo`: the fields without a value here keep their defaults.
    let name_lit = LitStr::new(&name_str, name.span());
    let gpu_kernel = match &op.kernel {
        Some(kernel) => {
            let lit = &kernel.name;
            quote!(::core::option::Option::Some(#lit))
        }
        None => quote!(::core::option::Option::None),
    };
    let gpu_source = op.kernel.as_ref().map(|kernel| {
        let source = &kernel.source;
        quote!(gpu_source: ::core::option::Option::Some(#source),)
    });
    let gpu_fn = op
        .gpu_fn
        .as_ref()
        .map(|path| quote_spanned!(path.span()=> gpu_fn: ::core::option::Option::Some(#path),));
    // The estimate as an `f64` literal (`2.5f64`), spanned at what was written.
    let cpu_ns_per_element = op.cost.as_ref().map(|cost| {
        let mut lit = Literal::f64_suffixed(cost.ns);
        lit.set_span(cost.span);
        quote!(cpu_ns_per_element: ::core::option::Option::Some(#lit),)
    });
    let splittable = op.splittable;
    let alloc = op.alloc;

    let record = spec.params.iter().map(|p| {
        let (name, base, split) = (&p.name, &p.base, &p.split);
        match p.mode {
            Mode::Owned | Mode::Borrowed => quote_spanned! {split.span()=>
                #call.arg::<#split, #base>(::bach_runtime::IntoArg::into_arg(#name));
            },
            Mode::Mutated => quote_spanned! {split.span()=>
                #call.arg_mut::<#split, #base>(&*#name);
            },
        }
    });

    let unpack = spec.params.iter().map(|p| {
        let (name, base) = (&p.name, &p.base);
        let index = Literal::usize_unsuffixed(p.index);
        match p.mode {
            Mode::Owned => quote_spanned! {p.ty_span=>
                let #name: #base = ::core::clone::Clone::clone(#args.get::<#base>(#index)?);
            },
            Mode::Borrowed => quote_spanned! {p.ty_span=>
                let #name: &#base = #args.get::<#base>(#index)?;
            },
            Mode::Mutated => quote_spanned! {p.ty_span=>
                let mut #name: ::std::boxed::Box<#base> = #args.take::<#base>(#index)?;
            },
        }
    });
    let call_args = spec.params.iter().map(|p| {
        let name = &p.name;
        match p.mode {
            Mode::Owned | Mode::Borrowed => quote!(#name),
            Mode::Mutated => quote!(&mut *#name),
        }
    });
    let type_params: Vec<&Ident> = spec.sig.generics.type_params().map(|t| &t.ident).collect();
    let turbofish = (!type_params.is_empty()).then(|| quote!(::<#(#type_params),*>));
    let allow_unit = ret.unit.then(|| quote!(#[allow(clippy::let_unit_value)]));
    // The CPU function's value; a fallible one's `Err` becomes the runtime's
    // `Error::Call` naming the function, and ends this batch. A bound the
    // error type misses is reported at the error type.
    let cpu_call = quote!(#cpu_name #turbofish (#(#call_args),*));
    let value = match &ret.error {
        None => cpu_call,
        Some(error) => {
            let ret_ty = &ret.ty;
            let call_result = quote_spanned!(error.span()=>
                ::bach_runtime::__private::call_result::<#ret_ty, #error>
            );
            quote!(#call_result(#name_lit, #cpu_call)?)
        }
    };
    let mutated = spec.mutated().map(|p| {
        let (name, base) = (&p.name, &p.base);
        quote_spanned!(p.ty_span=> ::bach_runtime::__private::piece_box::<#base>(#name))
    });
    let write_back = spec.mutated().enumerate().map(|(k, p)| {
        let (name, base) = (&p.name, &p.base);
        let output = Literal::usize_unsuffixed(k + 1);
        quote_spanned!(name.span()=> *#name = #rec.output::<#base>(#output);)
    });
    // Bounds on the return type (`SplitType<R>`, `Value`) are reported at the
    // split type, else at the return type.
    let (ret_ty, ret_split) = (&ret.ty, &ret.split);
    let finish = quote_spanned!(ret_split.span()=> #call.finish::<#ret_split, #ret_ty>);
    let ret_piece =
        quote_spanned!(ret.span=> ::bach_runtime::__private::piece::<#ret_ty>(#ret_var));

    let lazy_doc = format!(
        " Lazy: records a call in Bach's task graph; see [`{name_str}::cpu`] for the eager CPU version."
    );
    let separator = (!docs.is_empty()).then(|| quote!(#[doc = ""]));

    quote! {
        #(#docs)*
        #separator
        #[doc = #lazy_doc]
        #(#attrs)*
        #vis fn #name #generics (#(#params),*) -> ::bach_runtime::Lazy<#lt, #ret_ty>
        #where_clause
        {
            // `..DEFAULT` keeps stubs compiling when the runtime adds fields.
            #[allow(clippy::needless_update)]
            // A constant, so that every call refers to one static `OpInfo`.
            let mut #call = ::bach_runtime::__private::CallBuilder::new({
                const INFO: ::bach_runtime::__private::OpInfo = ::bach_runtime::__private::OpInfo {
                    name: #name_lit,
                    gpu_kernel: #gpu_kernel,
                    splittable: #splittable,
                    alloc: #alloc,
                    #gpu_source
                    #gpu_fn
                    #cpu_ns_per_element
                    ..::bach_runtime::__private::OpInfo::DEFAULT
                };
                &INFO
            });
            #(#record)*
            // A `#[deprecated]` function is deprecated for its callers, not here.
            #[allow(deprecated)]
            let #rec = #finish(
                |#args: &mut ::bach_runtime::__private::Args<'_>| {
                    #(#unpack)*
                    #allow_unit
                    let #ret_var: #ret_ty = #value;
                    ::core::result::Result::Ok(::bach_runtime::__private::pieces([
                        #ret_piece
                        #(, #mutated)*
                    ]))
                }
            );
            #(#write_back)*
            #rec.output::<#ret_ty>(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Token text without whitespace: `> >` and `>>` compare equal.
    fn norm(tokens: impl ToString) -> String {
        tokens
            .to_string()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect()
    }

    /// The expansion, normalized; panics on errors.
    fn expanded(attr: TokenStream, item: TokenStream) -> String {
        match expand(attr, item) {
            Ok(tokens) => norm(tokens),
            Err(errors) => {
                let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                panic!("unexpected errors: {messages:?}")
            }
        }
    }

    #[track_caller]
    fn assert_contains(haystack: &str, needle: TokenStream) {
        let needle = norm(needle);
        assert!(
            haystack.contains(&needle),
            "expected\n  {needle}\nin\n  {haystack}"
        );
    }

    #[track_caller]
    fn assert_lacks(haystack: &str, needle: TokenStream) {
        let needle = norm(needle);
        assert!(
            !haystack.contains(&needle),
            "unexpected\n  {needle}\nin\n  {haystack}"
        );
    }

    /// The expansion of the contract's `add`, with the CPU body given.
    fn expected_add(cpu_params: TokenStream, cpu_body: TokenStream) -> TokenStream {
        quote! {
            #[doc(hidden)]
            pub fn __bach_cpu_add<T: Float>(#cpu_params) -> Array1<T> #cpu_body
            #[doc = "The CPU implementation of [`add`](fn@add)."]
            pub mod add {
                #[doc(inline)]
                #[allow(unused_imports, deprecated)]
                pub use super::__bach_cpu_add as cpu;
            }
            /// Adds.
            #[doc = ""]
            #[doc = " Lazy: records a call in Bach's task graph; see [`add::cpu`] for the eager CPU version."]
            pub fn add<'__bach, T: Float>(
                a: impl ::bach_runtime::IntoArg<'__bach, Array1<T>>,
                b: impl ::bach_runtime::IntoArg<'__bach, Array1<T>>
            ) -> ::bach_runtime::Lazy<'__bach, Array1<T>>
            {
                #[allow(clippy::needless_update)]
                let mut __call = ::bach_runtime::__private::CallBuilder::new({
                    const INFO: ::bach_runtime::__private::OpInfo = ::bach_runtime::__private::OpInfo {
                        name: "add",
                        gpu_kernel: ::core::option::Option::Some("add"),
                        splittable: true,
                        alloc: false,
                        gpu_source: ::core::option::Option::Some(BACH_KERNELS),
                        ..::bach_runtime::__private::OpInfo::DEFAULT
                    };
                    &INFO
                });
                __call.arg::<NdArraySplit, Array1<T>>(::bach_runtime::IntoArg::into_arg(a));
                __call.arg::<NdArraySplit, Array1<T>>(::bach_runtime::IntoArg::into_arg(b));
                #[allow(deprecated)]
                let __rec = __call.finish::<NdArraySplit, Array1<T>>(
                    |__args: &mut ::bach_runtime::__private::Args<'_>| {
                        let a: &Array1<T> = __args.get::<Array1<T>>(0)?;
                        let b: &Array1<T> = __args.get::<Array1<T>>(1)?;
                        let __ret: Array1<T> = __bach_cpu_add::<T>(a, b);
                        ::core::result::Result::Ok(::bach_runtime::__private::pieces([::bach_runtime::__private::piece::<Array1<T>>(__ret)]))
                    }
                );
                __rec.output::<Array1<T>>(0)
            }
        }
    }

    #[test]
    fn expands_the_contract_example() {
        let out = expanded(
            quote!(split = NdArraySplit, gpu = "add"),
            quote! {
                /// Adds.
                pub fn add<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<T> { a + b }
            },
        );
        assert_eq!(
            out,
            norm(expected_add(
                quote!(a: &Array1<T>, b: &Array1<T>),
                quote!({ a + b })
            ))
        );
    }

    #[test]
    fn wraps_forwards_the_arguments() {
        let out = expanded(
            quote!(split = NdArraySplit, gpu = "add", wraps = ndarray_ops::add),
            quote! {
                /// Adds.
                pub fn add<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<T>;
            },
        );
        // The CPU function's parameters are renamed, so that none can shadow
        // the wrapped path.
        assert_eq!(
            out,
            norm(expected_add(
                quote!(__bach_arg0: &Array1<T>, __bach_arg1: &Array1<T>),
                quote!({ ndarray_ops::add(__bach_arg0, __bach_arg1) })
            ))
        );
    }

    #[test]
    fn gpu_source_defaults_to_bach_kernels() {
        let item = quote!(
            pub fn neg(a: &Vec<f64>) -> Vec<f64> {
                todo!()
            }
        );
        let out = expanded(
            quote!(split = S, gpu = "neg", gpu_source = crate::kernels::NUMPY),
            item.clone(),
        );
        assert_contains(
            &out,
            quote! {
                alloc: false,
                gpu_source: ::core::option::Option::Some(crate::kernels::NUMPY),
                ..::bach_runtime::__private::OpInfo::DEFAULT
            },
        );
        let out = expanded(quote!(split = S, gpu = "neg"), item.clone());
        assert_contains(
            &out,
            quote!(gpu_source: ::core::option::Option::Some(BACH_KERNELS),),
        );
        // Without `gpu`, the default (`None`) applies.
        let out = expanded(quote!(split = S), item);
        assert_lacks(&out, quote!(gpu_source));
        assert_lacks(&out, quote!(BACH_KERNELS));
    }

    #[test]
    fn by_value_parameters_are_broadcast_and_cloned() {
        let out = expanded(
            quote!(split = NdArraySplit),
            quote!(
                pub fn scale(a: &Array1<f64>, s: f64) -> Array1<f64> {
                    a * s
                }
            ),
        );
        assert_contains(&out, quote!(s: impl ::bach_runtime::IntoArg<'__bach, f64>));
        assert_contains(
            &out,
            quote!(__call.arg::<::bach_runtime::Broadcast, f64>(::bach_runtime::IntoArg::into_arg(s));),
        );
        assert_contains(
            &out,
            quote!(let s: f64 = ::core::clone::Clone::clone(__args.get::<f64>(1)?);),
        );
        assert_contains(&out, quote!(gpu_kernel: ::core::option::Option::None,));
        // No type parameters: no turbofish, and only the stub's lifetime.
        assert_contains(&out, quote!(__bach_cpu_scale(a, s)));
        assert_contains(&out, quote!(pub fn scale<'__bach>));
    }

    #[test]
    fn mutated_parameters_are_outputs_in_order() {
        let out = expanded(
            quote!(split = S, split(n = N)),
            quote!(
                fn axpy<T: Copy>(x: &mut Vec<T>, n: usize, y: &mut Vec<T>) -> f64 {
                    0.0
                }
            ),
        );
        assert_contains(&out, quote!(x: &mut ::bach_runtime::Lazy<'__bach, Vec<T>>));
        assert_contains(&out, quote!(__call.arg_mut::<S, Vec<T>>(&*x);));
        assert_contains(
            &out,
            quote!(__call.arg::<N, usize>(::bach_runtime::IntoArg::into_arg(n));),
        );
        assert_contains(&out, quote!(__call.arg_mut::<S, Vec<T>>(&*y);));
        assert_contains(
            &out,
            quote!(let mut x: ::std::boxed::Box<Vec<T>> = __args.take::<Vec<T>>(0)?;),
        );
        assert_contains(
            &out,
            quote!(let mut y: ::std::boxed::Box<Vec<T>> = __args.take::<Vec<T>>(2)?;),
        );
        assert_contains(
            &out,
            quote!(let __ret: f64 = __bach_cpu_axpy::<T>(&mut *x, n, &mut *y);),
        );
        assert_contains(
            &out,
            quote!(::bach_runtime::__private::pieces([
                ::bach_runtime::__private::piece::<f64>(__ret),
                ::bach_runtime::__private::piece_box::<Vec<T>>(x),
                ::bach_runtime::__private::piece_box::<Vec<T>>(y)
            ])),
        );
        assert_contains(
            &out,
            quote! {
                *x = __rec.output::<Vec<T>>(1);
                *y = __rec.output::<Vec<T>>(2);
                __rec.output::<f64>(0)
            },
        );
        assert_contains(&out, quote!(__call.finish::<S, f64>));
    }

    #[test]
    fn unit_return() {
        let out = expanded(
            quote!(split = S),
            quote!(
                pub fn fill(a: &mut Vec<f64>, v: f64) {
                    a.fill(v)
                }
            ),
        );
        assert_contains(&out, quote!(-> ::bach_runtime::Lazy<'__bach, ()>));
        // `()` is broadcast whatever `split` says.
        assert_contains(&out, quote!(__call.finish::<::bach_runtime::Broadcast, ()>));
        assert_contains(
            &out,
            quote!(#[allow(clippy::let_unit_value)] let __ret: () = __bach_cpu_fill(&mut *a, v);),
        );
        assert_contains(&out, quote!(__rec.output::<()>(0)));

        let out = expanded(
            quote!(split = S),
            quote!(
                pub fn log(n: &u64) -> () {}
            ),
        );
        assert_contains(&out, quote!(__call.finish::<::bach_runtime::Broadcast, ()>));
        let out = expanded(
            quote!(split = S, ret = R),
            quote!(
                pub fn log(n: &u64) {}
            ),
        );
        assert_contains(&out, quote!(__call.finish::<R, ()>));
    }

    #[test]
    fn fallible_functions_map_err_into_the_runtime_error() {
        let out = expanded(
            quote!(split = NdArraySplit, wraps = cpu::checked_sqrt),
            quote!(
                pub fn checked_sqrt<T: Float>(a: &Array1<T>) -> Result<Array1<T>, MyError>;
            ),
        );
        // The stub and the split types are the `Ok` type's.
        assert_contains(&out, quote!(-> ::bach_runtime::Lazy<'__bach, Array1<T>>));
        assert_contains(&out, quote!(__call.finish::<NdArraySplit, Array1<T>>));
        assert_contains(
            &out,
            quote! {
                let __ret: Array1<T> = ::bach_runtime::__private::call_result::<Array1<T>, MyError>(
                    "checked_sqrt",
                    __bach_cpu_checked_sqrt::<T>(a)
                )?;
            },
        );
        // The CPU function keeps the declared return type.
        assert_contains(
            &out,
            quote!(pub fn __bach_cpu_checked_sqrt<T: Float>(__bach_arg0: &Array1<T>) -> Result<Array1<T>, MyError>),
        );

        let out = expanded(
            quote!(split = S),
            quote!(
                fn check(a: &mut Vec<f64>) -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert_contains(&out, quote!(-> ::bach_runtime::Lazy<'__bach, ()>));
        assert_contains(
            &out,
            quote!(#[allow(clippy::let_unit_value)] let __ret: () = ::bach_runtime::__private::call_result::<(), E>("check", __bach_cpu_check(&mut *a))?;),
        );
    }

    #[test]
    fn return_split_precedence() {
        let item = quote!(
            fn f(a: &A) -> B {
                todo!()
            }
        );
        let out = expanded(quote!(split = S, ret = R), item.clone());
        assert_contains(&out, quote!(__call.finish::<R, B>));
        let out = expanded(quote!(split = S), item.clone());
        assert_contains(&out, quote!(__call.finish::<S, B>));
        let out = expanded(quote!(split(a = P)), item);
        assert_contains(&out, quote!(__call.finish::<::bach_runtime::Broadcast, B>));
        assert_contains(&out, quote!(__call.arg::<P, A>));
    }

    #[test]
    fn overrides_beat_the_default() {
        let out = expanded(
            quote!(split = S, split(b = crate::P<f64>)),
            quote!(
                fn f(a: &A, b: &B) -> C {
                    todo!()
                }
            ),
        );
        assert_contains(&out, quote!(__call.arg::<S, A>));
        assert_contains(&out, quote!(__call.arg::<crate::P<f64>, B>));
    }

    #[test]
    fn alloc_sizes_the_first_parameter() {
        let out = expanded(
            quote!(alloc, split = NdArraySplit, wraps = Array1::zeros),
            quote!(
                pub fn zeros(n: usize) -> Array1<f64>;
            ),
        );
        assert_contains(&out, quote!(alloc: true,));
        assert_contains(
            &out,
            quote!(__call.arg::<::bach_runtime::SizeSplit, usize>(::bach_runtime::IntoArg::into_arg(n));),
        );
        assert_contains(&out, quote!(__call.finish::<NdArraySplit, Array1<f64>>));
        assert_contains(&out, quote!({ Array1::zeros(__bach_arg0) }));

        let out = expanded(
            quote!(alloc, split(n = MySize)),
            quote!(
                pub fn full(n: usize, v: f64) -> Vec<f64> {
                    vec![v; n]
                }
            ),
        );
        assert_contains(&out, quote!(__call.arg::<MySize, usize>));
        assert_contains(&out, quote!(__call.arg::<::bach_runtime::Broadcast, f64>));
    }

    #[test]
    fn unsplittable_and_gpu_fn() {
        let out = expanded(
            quote!(unsplittable, gpu_fn = kernels::sort::<T>),
            quote!(
                pub fn sort<T: Ord>(v: Vec<T>) -> Vec<T> {
                    v
                }
            ),
        );
        assert_contains(
            &out,
            quote! {
                splittable: false,
                alloc: false,
                gpu_fn: ::core::option::Option::Some(kernels::sort::<T>),
                ..::bach_runtime::__private::OpInfo::DEFAULT
            },
        );
    }

    #[test]
    fn cost_is_an_f64_estimate() {
        let item = quote!(
            pub fn neg(a: &Vec<f64>) -> Vec<f64> {
                todo!()
            }
        );
        let out = expanded(quote!(split = S, gpu = "neg", cost = 2.5), item.clone());
        assert_contains(
            &out,
            quote! {
                gpu_source: ::core::option::Option::Some(BACH_KERNELS),
                cpu_ns_per_element: ::core::option::Option::Some(2.5f64),
                ..::bach_runtime::__private::OpInfo::DEFAULT
            },
        );
        // Integers, exponents and other suffixes become `f64` literals too.
        for (cost, lit) in [
            (quote!(3), quote!(3f64)),
            (quote!(1e3), quote!(1000f64)),
            (quote!(0.25f32), quote!(0.25f64)),
        ] {
            let out = expanded(quote!(split = S, cost = #cost), item.clone());
            assert_contains(
                &out,
                quote!(cpu_ns_per_element: ::core::option::Option::Some(#lit),),
            );
        }
        // Without `cost`, the default (`None`: calibrate) applies.
        let out = expanded(quote!(split = S), item);
        assert_lacks(&out, quote!(cpu_ns_per_element));
    }

    #[test]
    fn attributes_docs_and_cfg() {
        let out = expanded(
            quote!(split = S),
            quote! {
                /// First.
                #[doc = "Second."]
                #[inline]
                #[cfg(feature = "x")]
                #[allow(clippy::ptr_arg)]
                pub fn f(a: &A) -> A { a.clone() }
            },
        );
        // The CPU function: every attribute but the docs, and hidden.
        assert_contains(
            &out,
            quote! {
                #[inline] #[cfg(feature = "x")] #[allow(clippy::ptr_arg)] #[doc(hidden)]
                pub fn __bach_cpu_f
            },
        );
        // The module: `cfg` only.
        assert_contains(
            &out,
            quote!(#[cfg(feature = "x")] #[doc = "The CPU implementation of [`f`](fn@f)."] pub mod f),
        );
        // The stub: docs, the lazy line, then the other attributes.
        assert_contains(
            &out,
            quote! {
                /// First.
                #[doc = "Second."]
                #[doc = ""]
                #[doc = " Lazy: records a call in Bach's task graph; see [`f::cpu`] for the eager CPU version."]
                #[inline] #[cfg(feature = "x")] #[allow(clippy::ptr_arg)]
                pub fn f<'__bach>
            },
        );
    }

    #[test]
    fn without_docs_the_stub_has_the_lazy_line_only() {
        let out = expanded(
            quote!(),
            quote!(
                fn f(n: u32) -> u32 {
                    n
                }
            ),
        );
        assert_lacks(&out, quote!(#[doc = ""]));
        assert_contains(
            &out,
            quote! {
                #[doc = " Lazy: records a call in Bach's task graph; see [`f::cpu`] for the eager CPU version."]
                fn f<'__bach>
            },
        );
    }

    #[test]
    fn companion_module_visibility() {
        let cases = [
            (quote!(pub), quote!(pub mod f), quote!(pub use)),
            (quote!(), quote!(mod f), quote!(pub(super) use)),
            (
                quote!(pub(crate)),
                quote!(pub(crate) mod f),
                quote!(pub(crate) use),
            ),
            (
                quote!(pub(self)),
                quote!(pub(self) mod f),
                quote!(pub(in super) use),
            ),
            (
                quote!(pub(super)),
                quote!(pub(super) mod f),
                quote!(pub(in super::super) use),
            ),
            (
                quote!(pub(in crate::a)),
                quote!(pub(in crate::a) mod f),
                quote!(pub(in crate::a) use),
            ),
            (
                quote!(pub(in super::a)),
                quote!(pub(in super::a) mod f),
                quote!(pub(in super::super::a) use),
            ),
            (
                quote!(pub(in self::a)),
                quote!(pub(in self::a) mod f),
                quote!(pub(in super::a) use),
            ),
        ];
        for (vis, module, use_) in cases {
            let out = expanded(quote!(), quote!(#vis fn f(n: u32) -> u32 { n }));
            assert_contains(&out, module);
            assert_contains(&out, quote!(#use_ super::__bach_cpu_f as cpu;));
            assert_contains(&out, quote!(#[doc(hidden)] #vis fn __bach_cpu_f));
            assert_contains(&out, quote!(#vis fn f<'__bach>));
        }
    }

    #[test]
    fn where_clauses_and_generics() {
        let out = expanded(
            quote!(split = S),
            quote!(
                pub fn f<T: Clone, U>(a: &Vec<T>, u: U) -> Vec<T>
                where
                    U: Copy + Send,
                {
                    a.clone()
                }
            ),
        );
        assert_contains(
            &out,
            quote! {
                pub fn f<'__bach, T: Clone, U>(
                    a: impl ::bach_runtime::IntoArg<'__bach, Vec<T>>,
                    u: impl ::bach_runtime::IntoArg<'__bach, U>
                ) -> ::bach_runtime::Lazy<'__bach, Vec<T>>
                where U: Copy + Send
            },
        );
        assert_contains(&out, quote!(__bach_cpu_f::<T, U>(a, u)));
        assert_contains(
            &out,
            quote!(pub fn __bach_cpu_f<T: Clone, U>(a: &Vec<T>, u: U) -> Vec<T> where U: Copy + Send),
        );
    }

    #[test]
    fn mut_patterns_stay_on_the_cpu_function() {
        let out = expanded(
            quote!(),
            quote!(
                fn count(mut n: u32) -> u32 {
                    n += 1;
                    n
                }
            ),
        );
        assert_contains(&out, quote!(fn __bach_cpu_count(mut n: u32) -> u32));
        assert_contains(&out, quote!(n: impl ::bach_runtime::IntoArg<'__bach, u32>));
    }

    #[test]
    fn raw_identifiers() {
        let out = expanded(
            quote!(),
            quote!(
                pub fn r#where(n: u32) -> u32 {
                    n
                }
            ),
        );
        assert_contains(&out, quote!(pub fn __bach_cpu_where(n: u32)));
        assert_contains(&out, quote!(pub mod r#where));
        assert_contains(&out, quote!(name: "where",));
    }

    #[test]
    fn on_error_the_function_is_reemitted() {
        let item = quote!(
            pub async fn f(a: &A) -> A {
                a.clone()
            }
        );
        let out = offload(quote!(split = S), item.clone()).to_string();
        assert!(out.starts_with(&item.to_string()), "{out}");
        assert!(out.contains("compile_error"), "{out}");
        assert!(
            out.contains("offloaded functions cannot be `async`"),
            "{out}"
        );
    }

    #[test]
    fn on_error_a_declaration_gets_a_body() {
        let out = offload(
            quote!(split = S),
            quote!(
                pub fn f(a: &A) -> A;
            ),
        )
        .to_string();
        assert!(
            out.starts_with(
                &quote!(
                    #[allow(unused_variables)]
                    pub fn f(a: &A) -> A {
                        ::core::unimplemented!()
                    }
                )
                .to_string()
            ),
            "{out}"
        );
        assert!(out.contains("function has no body"), "{out}");
    }

    #[test]
    fn on_error_a_non_function_is_reemitted() {
        let item = quote!(
            struct S;
        );
        let out = offload(quote!(), item.clone()).to_string();
        assert!(out.starts_with(&item.to_string()), "{out}");
        assert!(
            out.contains("can only be applied to free functions"),
            "{out}"
        );
    }
}
