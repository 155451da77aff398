//! [`OffloadSpec`], everything code generation needs about one annotated function,
//! and the front half of the pipeline that builds it: parse the options
//! (`attr.rs`), model the signature (`signature.rs`), check both (`valid.rs`),
//! then lower them into the spec here.
//!
//! Lowering resolves what the options leave implicit (the split type of every
//! parameter and of the return value, the source of a `gpu` kernel, the `cost` as
//! a number), so that `expand.rs` decides nothing about the annotation: it only
//! writes the spec out as tokens.

use proc_macro2::{Span, TokenStream};
use quote::{quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Attribute, Block, ExprPath, Ident, LitStr, Path, Signature, Type, Visibility};

use crate::attr::{self, OffloadOptions};
pub(crate) use crate::signature::Mode;
use crate::signature::{FnSignature, OffloadItem, Param, Returns};
use crate::valid;

/// Everything code generation needs to know about one annotated function.
pub(crate) struct OffloadSpec {
    /// The function's name as written (`r#where` stays raw), as in `sig`.
    pub name: Ident,
    pub vis: Visibility,
    /// The `#[doc]` attributes, in order: the stub's documentation.
    pub docs: Vec<Attribute>,
    /// Every other attribute, in order: copied onto the stub and the CPU function.
    pub attrs: Vec<Attribute>,
    /// The signature as written: the CPU function's, and the stub's generics.
    pub sig: Signature,
    /// Every parameter, in declaration order.
    pub params: Vec<ParamSpec>,
    pub ret: ReturnSpec,
    /// What the CPU function runs.
    pub body: CpuBody,
    /// What the stub tells the runtime about the function (its `OpInfo`).
    pub op: OpSpec,
}

/// One parameter.
pub(crate) struct ParamSpec {
    pub name: Ident,
    /// The position among the declared parameters: the index of its piece in `Args`.
    pub index: usize,
    pub mode: Mode,
    /// The type without its reference: `Array1<T>` for `&Array1<T>`.
    pub base: Type,
    /// The declared type's span, where a type error about the parameter points.
    pub ty_span: Span,
    pub split: Split,
}

/// The return value.
pub(crate) struct ReturnSpec {
    /// The type of the lazy value: the declared type (`()` when none is
    /// written), or `T` of a declared `Result<T, E>`.
    pub ty: Type,
    /// `E` of a declared `Result<T, E>`: the function is fallible.
    pub error: Option<Type>,
    /// The function returns nothing or `()`.
    pub unit: bool,
    /// The span of `ty` as declared, else the function name's: where a type
    /// error about the return value points.
    pub span: Span,
    pub split: Split,
}

/// What the CPU function runs.
pub(crate) enum CpuBody {
    /// The function's own body.
    Block(Box<Block>),
    /// `wraps = path`: a call of `path` with the arguments in order.
    Wraps(ExprPath),
}

/// The options that become fields of the runtime's `OpInfo`.
pub(crate) struct OpSpec {
    /// `gpu = "kernel"`.
    pub kernel: Option<Kernel>,
    /// `gpu_fn = path`.
    pub gpu_fn: Option<ExprPath>,
    /// Not `unsplittable`.
    pub splittable: bool,
    /// `alloc`.
    pub alloc: bool,
    /// `cost = ...`.
    pub cost: Option<Cost>,
}

/// A CUDA kernel family and the `KernelSource` holding it.
pub(crate) struct Kernel {
    pub name: LitStr,
    /// `gpu_source = path`, else `BACH_KERNELS` resolved where the function is,
    /// spanned at `gpu` so that a missing constant is reported there.
    pub source: ExprPath,
}

/// The estimated CPU nanoseconds per element.
pub(crate) struct Cost {
    pub ns: f64,
    /// The literal's span.
    pub span: Span,
}

/// A resolved split type.
pub(crate) enum Split {
    /// A path written by the user, used as a type where written.
    User(Path),
    /// `::bach_runtime::NAME`, a default, spanned at what it applies to.
    Runtime { name: &'static str, span: Span },
}

impl ToTokens for Split {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            Split::User(path) => path.to_tokens(tokens),
            Split::Runtime { name, span } => {
                let ident = Ident::new(name, *span);
                tokens.extend(quote_spanned!(*span=> ::bach_runtime::#ident));
            }
        }
    }
}

impl Split {
    /// Where a type error about this split type should point.
    pub fn span(&self) -> Span {
        match self {
            Split::User(path) => path.span(),
            Split::Runtime { span, .. } => *span,
        }
    }

    fn runtime(name: &'static str, span: Span) -> Split {
        Split::Runtime { name, span }
    }
}

impl OffloadSpec {
    /// Parses, models, checks and lowers `#[offload(attr)] item`: the spec, or every
    /// error found, in source order.
    pub fn from_tokens(
        attr: TokenStream,
        item: TokenStream,
    ) -> Result<OffloadSpec, Vec<syn::Error>> {
        let mut errors = Vec::new();
        let options = attr::parse(attr, &mut errors);
        let item: OffloadItem = match syn::parse2(item) {
            Ok(item) => item,
            Err(e) => {
                errors.push(e);
                return Err(errors);
            }
        };
        let sig = FnSignature::analyse(&item.sig);
        valid::check(&options, &item, &sig, &mut errors);
        OffloadSpec::lower(options, item, sig, &mut errors).ok_or(errors)
    }

    /// Lowers a checked function. Resolving the split types reports the reference
    /// parameters that have none; the spec is returned when `errors` is empty
    /// after that, so that every `valid.rs` check has passed.
    fn lower(
        options: OffloadOptions,
        item: OffloadItem,
        sig: FnSignature,
        errors: &mut Vec<syn::Error>,
    ) -> Option<OffloadSpec> {
        let param_splits: Vec<Split> = sig
            .params
            .iter()
            .map(|p| param_split(&options, p, errors))
            .collect();
        if !errors.is_empty() {
            return None;
        }

        let unit = sig.returns_unit();
        let span = sig
            .value_type()
            .map_or_else(|| sig.name.span(), |t| t.span());
        let (ty, error) = match sig.returns {
            Returns::Fallible { ok, err } => (*ok, Some(*err)),
            Returns::Value | Returns::ResultAlias => {
                (sig.ret.unwrap_or_else(|| syn::parse_quote!(())), None)
            }
        };
        let ret = ReturnSpec {
            ty,
            error,
            unit,
            span,
            split: ret_split(&options, unit, span),
        };
        let params = sig
            .params
            .into_iter()
            .zip(param_splits)
            .map(|(p, split)| ParamSpec {
                ty_span: p.ty.span(),
                name: p.name,
                index: p.index,
                mode: p.mode,
                base: p.base,
                split,
            })
            .collect();
        let body = match (item.body, options.wraps) {
            (Some(block), _) => CpuBody::Block(block),
            (None, Some(wraps)) => CpuBody::Wraps(wraps.value),
            (None, None) => unreachable!("valid.rs reports a missing body"),
        };
        let op = OpSpec {
            kernel: options.gpu.map(|gpu| Kernel {
                name: gpu.value,
                source: match options.gpu_source {
                    Some(source) => source.value,
                    None => ExprPath {
                        attrs: Vec::new(),
                        qself: None,
                        path: Ident::new("BACH_KERNELS", gpu.key).into(),
                    },
                },
            }),
            gpu_fn: options.gpu_fn.map(|g| g.value),
            splittable: options.unsplittable.is_none(),
            alloc: options.alloc.is_some(),
            cost: options.cost.map(|cost| Cost {
                ns: cost
                    .value
                    .number()
                    .expect("valid.rs reports a `cost` that is not a number"),
                span: cost.value.lit.span(),
            }),
        };
        let (docs, attrs) = item
            .attrs
            .into_iter()
            .partition(|a| a.path().is_ident("doc"));
        Some(OffloadSpec {
            name: sig.name,
            vis: item.vis,
            docs,
            attrs,
            sig: item.sig,
            params,
            ret,
            body,
            op,
        })
    }

    /// The parameters passed as `&mut`, in declaration order: the outputs after the
    /// return value.
    pub fn mutated(&self) -> impl Iterator<Item = &ParamSpec> {
        self.params.iter().filter(|p| p.mode == Mode::Mutated)
    }
}

/// A parameter's split type: its `split(...)` entry, else `SizeSplit` for the size of
/// an `alloc` function, else `Broadcast` for a value and `split = ...` for a reference.
fn param_split(options: &OffloadOptions, p: &Param, errors: &mut Vec<syn::Error>) -> Split {
    if let Some(o) = options.split_override(&p.name) {
        return Split::User(o.split.clone());
    }
    let span = p.name.span();
    if options.alloc.is_some() && p.index == 0 {
        return Split::runtime("SizeSplit", span);
    }
    match (p.mode, &options.split) {
        (Mode::Owned, _) => Split::runtime("Broadcast", span),
        (Mode::Borrowed | Mode::Mutated, Some(default)) => Split::User(default.value.clone()),
        (Mode::Borrowed | Mode::Mutated, None) => {
            // After a syntax error, the missing `split` may be the one that failed.
            if !options.recovered {
                errors.push(syn::Error::new(
                    span,
                    format!(
                        "no split type for `{0}`: add `split = ...` or `split({0} = ...)`",
                        p.name
                    ),
                ));
            }
            Split::runtime("Broadcast", span)
        }
    }
}

/// The return value's split type: `ret = ...`, else `split = ...`, else `Broadcast`
/// spanned at `span`. A function returning nothing returns `()`, broadcast whatever
/// `split` says.
fn ret_split(options: &OffloadOptions, unit: bool, span: Span) -> Split {
    match (&options.ret, &options.split) {
        (Some(ret), _) => Split::User(ret.value.clone()),
        (None, Some(default)) if !unit => Split::User(default.value.clone()),
        _ => Split::runtime("Broadcast", span),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn spec(attr: TokenStream, item: TokenStream) -> OffloadSpec {
        OffloadSpec::from_tokens(attr, item).unwrap_or_else(|errors| {
            let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            panic!("unexpected errors: {messages:?}")
        })
    }

    fn tokens(t: &impl ToTokens) -> String {
        t.to_token_stream().to_string()
    }

    #[test]
    fn parameters_get_their_mode_and_split_type() {
        let s = spec(
            quote!(split = S, split(n = N)),
            quote!(
                fn f(a: &A, n: usize, m: u8, o: &mut B) -> C {
                    todo!()
                }
            ),
        );
        let params: Vec<_> = s
            .params
            .iter()
            .map(|p| {
                (
                    p.name.to_string(),
                    p.index,
                    p.mode,
                    tokens(&p.base),
                    tokens(&p.split),
                )
            })
            .collect();
        let row = |name: &str, index, mode, base: &str, split: &str| {
            (
                name.to_string(),
                index,
                mode,
                base.to_string(),
                split.to_string(),
            )
        };
        assert_eq!(
            params,
            [
                row("a", 0, Mode::Borrowed, "A", "S"),
                row("n", 1, Mode::Owned, "usize", "N"),
                row("m", 2, Mode::Owned, "u8", ":: bach_runtime :: Broadcast"),
                row("o", 3, Mode::Mutated, "B", "S"),
            ]
        );
        let mutated: Vec<String> = s.mutated().map(|p| p.name.to_string()).collect();
        assert_eq!(mutated, ["o"]);
        assert_eq!(tokens(&s.ret.ty), "C");
        assert_eq!(tokens(&s.ret.split), "S");
        assert!(!s.ret.unit);
    }

    #[test]
    fn the_size_of_an_alloc_function_is_split_by_size() {
        let s = spec(
            quote!(alloc, split = S, wraps = Vec::with_capacity),
            quote!(
                fn f(n: usize, v: f64) -> Vec<f64>;
            ),
        );
        let splits: Vec<String> = s.params.iter().map(|p| tokens(&p.split)).collect();
        assert_eq!(
            splits,
            [
                ":: bach_runtime :: SizeSplit",
                ":: bach_runtime :: Broadcast"
            ]
        );
        assert!(s.op.alloc);
        assert!(matches!(&s.body, CpuBody::Wraps(p) if tokens(p) == "Vec :: with_capacity"));
    }

    #[test]
    fn return_split_types() {
        let ret = |attr: TokenStream, item: TokenStream| spec(attr, item).ret;
        let r = ret(
            quote!(split = S, ret = R),
            quote!(
                fn f(a: &A) -> B {
                    todo!()
                }
            ),
        );
        assert_eq!(tokens(&r.split), "R");
        // Nothing returned: `()`, broadcast whatever `split` says, unless `ret` says.
        let r = ret(
            quote!(split = S),
            quote!(
                fn f(a: &A) {}
            ),
        );
        assert!(r.unit);
        assert_eq!(tokens(&r.ty), "()");
        assert_eq!(tokens(&r.split), ":: bach_runtime :: Broadcast");
        let r = ret(
            quote!(split = S),
            quote!(
                fn f(a: &A) -> () {}
            ),
        );
        assert!(r.unit);
        assert_eq!(tokens(&r.split), ":: bach_runtime :: Broadcast");
        let r = ret(
            quote!(split = S, ret = R),
            quote!(
                fn f(a: &A) {}
            ),
        );
        assert_eq!(tokens(&r.split), "R");
        let r = ret(
            quote!(split(a = S)),
            quote!(
                fn f(a: &A) -> B {
                    todo!()
                }
            ),
        );
        assert_eq!(tokens(&r.split), ":: bach_runtime :: Broadcast");
    }

    #[test]
    fn a_fallible_function_returns_its_ok_type() {
        let r = spec(
            quote!(split = S),
            quote!(
                fn f(a: &A) -> std::result::Result<B, my::Error> {
                    todo!()
                }
            ),
        )
        .ret;
        assert_eq!(tokens(&r.ty), "B");
        assert_eq!(tokens(r.error.as_ref().unwrap()), "my :: Error");
        assert_eq!(tokens(&r.split), "S");
        assert!(!r.unit);
        // `Result<(), E>`: the lazy value is `()`, broadcast.
        let r = spec(
            quote!(split = S),
            quote!(
                fn f(a: &mut A) -> Result<(), E> {
                    todo!()
                }
            ),
        )
        .ret;
        assert!(r.unit);
        assert_eq!(tokens(&r.split), ":: bach_runtime :: Broadcast");
        let r = spec(
            quote!(split = S),
            quote!(
                fn f(a: &A) -> B {
                    todo!()
                }
            ),
        )
        .ret;
        assert!(r.error.is_none());
    }

    #[test]
    fn op_info_options() {
        let item = quote!(
            fn f(n: u32) -> u32 {
                n
            }
        );
        let op = spec(quote!(), item.clone()).op;
        assert!(op.kernel.is_none() && op.gpu_fn.is_none() && op.cost.is_none());
        assert!(op.splittable && !op.alloc);

        let op = spec(quote!(gpu = "k", cost = 3, unsplittable), item.clone()).op;
        let kernel = op.kernel.unwrap();
        assert_eq!(kernel.name.value(), "k");
        assert_eq!(tokens(&kernel.source), "BACH_KERNELS");
        assert_eq!(op.cost.unwrap().ns, 3.0);
        assert!(!op.splittable);

        let op = spec(quote!(gpu = "k", gpu_source = kernels::SRC), item.clone()).op;
        assert_eq!(tokens(&op.kernel.unwrap().source), "kernels :: SRC");

        let op = spec(quote!(gpu_fn = on_device::<T>), item).op;
        assert_eq!(tokens(&op.gpu_fn.unwrap()), "on_device :: < T >");
    }

    #[test]
    fn docs_are_set_apart_from_other_attributes() {
        let s = spec(
            quote!(),
            quote! {
                /// First.
                #[inline]
                #[doc = "Second."]
                #[cfg(test)]
                pub(crate) fn r#where(n: u32) -> u32 { n }
            },
        );
        let docs: Vec<String> = s.docs.iter().map(tokens).collect();
        assert_eq!(docs, ["# [doc = r\" First.\"]", "# [doc = \"Second.\"]"]);
        let attrs: Vec<String> = s.attrs.iter().map(tokens).collect();
        assert_eq!(attrs, ["# [inline]", "# [cfg (test)]"]);
        assert_eq!(s.name.to_string(), "r#where");
        assert_eq!(tokens(&s.vis), "pub (crate)");
        assert!(matches!(s.body, CpuBody::Block(_)));
    }

    #[test]
    fn errors_instead_of_a_spec() {
        let errors = OffloadSpec::from_tokens(
            quote!(gpu = ""),
            quote!(
                fn f(a: &A) {}
            ),
        )
        .err()
        .unwrap();
        let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            messages,
            [
                "the `gpu` kernel name cannot be empty",
                "no split type for `a`: add `split = ...` or `split(a = ...)`",
            ]
        );
    }
}
