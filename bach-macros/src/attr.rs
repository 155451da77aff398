//! Parsing of the `#[offload(...)]` attribute into [`OffloadOptions`].
//!
//! Parsing recovers at the next top-level `,` after a syntax error, so that every
//! malformed option is reported at once. Duplicate options are detected here, by
//! [`set_once`]; the checks that relate options to each other or to the signature
//! live in `valid.rs`.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::parse::{Parse, ParseStream, Parser};
use syn::{token, ExprPath, Ident, Lit, LitStr, Path, Token};

/// The keys of `#[offload(...)]`, declared once.
pub(crate) mod kw {
    syn::custom_keyword!(split);
    syn::custom_keyword!(ret);
    syn::custom_keyword!(gpu);
    syn::custom_keyword!(gpu_fn);
    syn::custom_keyword!(gpu_source);
    syn::custom_keyword!(alloc);
    syn::custom_keyword!(unsplittable);
    syn::custom_keyword!(wraps);
    syn::custom_keyword!(cost);
}

/// An option's value with the span of its key.
#[derive(Debug, Clone)]
pub(crate) struct Keyed<T> {
    pub key: Span,
    pub value: T,
}

/// One `name = SplitPath` entry of `split(...)`.
#[derive(Debug, Clone)]
pub(crate) struct SplitOverride {
    pub param: Ident,
    pub split: Path,
}

/// The value of `cost = ...`: a literal with an optional `-`, as written. Whether it
/// is a positive number is checked in `valid.rs`.
#[derive(Debug, Clone)]
pub(crate) struct CostLit {
    pub minus: Option<Token![-]>,
    pub lit: Lit,
}

impl CostLit {
    /// The number written, `None` for a literal that is not a number.
    pub fn number(&self) -> Option<f64> {
        let magnitude = match &self.lit {
            Lit::Float(f) => f.base10_parse::<f64>().ok()?,
            Lit::Int(i) => i.base10_parse::<f64>().ok()?,
            _ => return None,
        };
        Some(if self.minus.is_some() {
            -magnitude
        } else {
            magnitude
        })
    }
}

impl Parse for CostLit {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        Ok(CostLit {
            minus: input.parse()?,
            lit: input.parse()?,
        })
    }
}

impl ToTokens for CostLit {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.minus.to_tokens(tokens);
        self.lit.to_tokens(tokens);
    }
}

/// The model of `#[offload(...)]`.
#[derive(Debug, Default)]
pub(crate) struct OffloadOptions {
    /// `split = Path`: the default split type of reference parameters and of the return value.
    pub split: Option<Keyed<Path>>,
    /// `split(a = Path, ...)`: per-parameter split types.
    pub split_overrides: Option<Keyed<Vec<SplitOverride>>>,
    /// `ret = Path`: the split type of the return value.
    pub ret: Option<Keyed<Path>>,
    /// `gpu = "kernel"`: the CUDA kernel family.
    pub gpu: Option<Keyed<LitStr>>,
    /// `gpu_fn = path`: a Rust function on device values.
    pub gpu_fn: Option<Keyed<ExprPath>>,
    /// `gpu_source = path`: the `KernelSource` holding the `gpu` kernel (else `BACH_KERNELS`).
    pub gpu_source: Option<Keyed<ExprPath>>,
    /// `alloc`: an allocation function.
    pub alloc: Option<Keyed<()>>,
    /// `unsplittable`: a pipeline break.
    pub unsplittable: Option<Keyed<()>>,
    /// `wraps = path`: the CPU implementation of a bodyless declaration.
    pub wraps: Option<Keyed<ExprPath>>,
    /// `cost = 2.5`: the estimated CPU nanoseconds per element (per number: a
    /// matrix row costs it times the row's width).
    pub cost: Option<Keyed<CostLit>>,
    /// Some option failed to parse: checks that depend on an absent option are skipped.
    pub recovered: bool,
}

impl OffloadOptions {
    /// The split type given for parameter `name` in `split(...)`.
    pub fn split_override(&self, name: &Ident) -> Option<&SplitOverride> {
        self.split_overrides
            .as_ref()?
            .value
            .iter()
            .find(|o| o.param == *name)
    }
}

/// One parsed option, before duplicates are resolved.
enum OptionItem {
    Split(Keyed<Path>),
    SplitOverrides(Keyed<Vec<SplitOverride>>),
    Ret(Keyed<Path>),
    Gpu(Keyed<LitStr>),
    DeviceFn(Keyed<ExprPath>),
    GpuSource(Keyed<ExprPath>),
    Alloc(Keyed<()>),
    Unsplittable(Keyed<()>),
    Wraps(Keyed<ExprPath>),
    Cost(Keyed<CostLit>),
}

/// Parses the attribute's tokens. Every error found is pushed to `errors`; the model
/// holds every option that parsed.
pub(crate) fn parse(attr: TokenStream, errors: &mut Vec<syn::Error>) -> OffloadOptions {
    let mut items = Vec::new();
    let mut syntax_errors = Vec::new();
    let parser = |input: ParseStream| -> syn::Result<()> {
        parse_list(input, &mut syntax_errors, |input, errors| {
            items.push(parse_option(input, errors)?);
            Ok(())
        });
        Ok(())
    };
    if let Err(e) = parser.parse2(attr) {
        syntax_errors.push(e);
    }
    let mut options = OffloadOptions {
        recovered: !syntax_errors.is_empty(),
        ..OffloadOptions::default()
    };
    errors.append(&mut syntax_errors);
    for item in items {
        let o = &mut options;
        match item {
            OptionItem::Split(v) => set_once(&mut o.split, v, "split", errors),
            OptionItem::SplitOverrides(v) => {
                set_once(&mut o.split_overrides, v, "split(...)", errors)
            }
            OptionItem::Ret(v) => set_once(&mut o.ret, v, "ret", errors),
            OptionItem::Gpu(v) => set_once(&mut o.gpu, v, "gpu", errors),
            OptionItem::DeviceFn(v) => set_once(&mut o.gpu_fn, v, "gpu_fn", errors),
            OptionItem::GpuSource(v) => set_once(&mut o.gpu_source, v, "gpu_source", errors),
            OptionItem::Alloc(v) => set_once(&mut o.alloc, v, "alloc", errors),
            OptionItem::Unsplittable(v) => set_once(&mut o.unsplittable, v, "unsplittable", errors),
            OptionItem::Wraps(v) => set_once(&mut o.wraps, v, "wraps", errors),
            OptionItem::Cost(v) => set_once(&mut o.cost, v, "cost", errors),
        }
    }
    options
}

/// Stores `value` in `slot`, or reports a duplicate at the second occurrence's key.
/// The one duplicate check for every key.
fn set_once<T>(
    slot: &mut Option<Keyed<T>>,
    value: Keyed<T>,
    name: &str,
    errors: &mut Vec<syn::Error>,
) {
    if slot.is_some() {
        errors.push(syn::Error::new(
            value.key,
            format!("duplicate option `{name}`"),
        ));
    } else {
        *slot = Some(value);
    }
}

/// Parses a `,`-separated list with `element`, recovering after an error at the next
/// top-level `,`. Consumes the whole input.
fn parse_list(
    input: ParseStream,
    errors: &mut Vec<syn::Error>,
    mut element: impl FnMut(ParseStream, &mut Vec<syn::Error>) -> syn::Result<()>,
) {
    while !input.is_empty() {
        if let Err(e) = element(input, errors) {
            errors.push(e);
            skip_to_comma(input);
        }
        if input.is_empty() {
            break;
        }
        if let Err(e) = input.parse::<Token![,]>() {
            errors.push(e);
            skip_to_comma(input);
            let _ = input.parse::<Option<Token![,]>>();
        }
    }
}

/// Skips token trees up to (not including) the next `,` at this nesting level.
fn skip_to_comma(input: ParseStream) {
    let _ = input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            if matches!(&tt, TokenTree::Punct(p) if p.as_char() == ',') {
                break;
            }
            rest = next;
        }
        Ok(((), rest))
    });
}

fn parse_option(input: ParseStream, errors: &mut Vec<syn::Error>) -> syn::Result<OptionItem> {
    let lookahead = input.lookahead1();
    if lookahead.peek(kw::split) {
        let key = input.parse::<kw::split>()?.span;
        if input.peek(token::Paren) {
            let content;
            syn::parenthesized!(content in input);
            let mut overrides = Vec::new();
            parse_list(&content, errors, |input, errors| {
                let param: Ident = input.parse()?;
                input.parse::<Token![=]>()?;
                let split: Path = input.parse()?;
                if overrides.iter().any(|o: &SplitOverride| o.param == param) {
                    errors.push(syn::Error::new(
                        param.span(),
                        format!("duplicate split type for parameter `{param}`"),
                    ));
                } else {
                    overrides.push(SplitOverride { param, split });
                }
                Ok(())
            });
            Ok(OptionItem::SplitOverrides(Keyed {
                key,
                value: overrides,
            }))
        } else if input.peek(Token![=]) {
            Ok(OptionItem::Split(value(input, key)?))
        } else {
            Err(input.error("expected `= SplitType` or `(param = SplitType, ...)` after `split`"))
        }
    } else if lookahead.peek(kw::ret) {
        let key = input.parse::<kw::ret>()?.span;
        Ok(OptionItem::Ret(value(input, key)?))
    } else if lookahead.peek(kw::gpu) {
        let key = input.parse::<kw::gpu>()?.span;
        Ok(OptionItem::Gpu(value(input, key)?))
    } else if lookahead.peek(kw::gpu_fn) {
        let key = input.parse::<kw::gpu_fn>()?.span;
        Ok(OptionItem::DeviceFn(value(input, key)?))
    } else if lookahead.peek(kw::gpu_source) {
        let key = input.parse::<kw::gpu_source>()?.span;
        Ok(OptionItem::GpuSource(value(input, key)?))
    } else if lookahead.peek(kw::alloc) {
        let key = input.parse::<kw::alloc>()?.span;
        Ok(OptionItem::Alloc(Keyed { key, value: () }))
    } else if lookahead.peek(kw::unsplittable) {
        let key = input.parse::<kw::unsplittable>()?.span;
        Ok(OptionItem::Unsplittable(Keyed { key, value: () }))
    } else if lookahead.peek(kw::wraps) {
        let key = input.parse::<kw::wraps>()?.span;
        Ok(OptionItem::Wraps(value(input, key)?))
    } else if lookahead.peek(kw::cost) {
        let key = input.parse::<kw::cost>()?.span;
        Ok(OptionItem::Cost(value(input, key)?))
    } else {
        Err(lookahead.error())
    }
}

/// Parses `= value` after a key.
fn value<T: syn::parse::Parse>(input: ParseStream, key: Span) -> syn::Result<Keyed<T>> {
    input.parse::<Token![=]>()?;
    Ok(Keyed {
        key,
        value: input.parse()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::{quote, ToTokens};

    fn parse_ok(attr: TokenStream) -> OffloadOptions {
        let mut errors = Vec::new();
        let options = parse(attr, &mut errors);
        let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(messages.is_empty(), "unexpected errors: {messages:?}");
        options
    }

    fn parse_errors(attr: TokenStream) -> Vec<String> {
        let mut errors = Vec::new();
        parse(attr, &mut errors);
        errors.iter().map(|e| e.to_string()).collect()
    }

    fn tokens(t: &impl ToTokens) -> String {
        t.to_token_stream().to_string()
    }

    #[test]
    fn empty_attribute() {
        let o = parse_ok(quote!());
        assert!(o.split.is_none() && o.split_overrides.is_none() && o.ret.is_none());
        assert!(o.gpu.is_none() && o.gpu_fn.is_none() && o.gpu_source.is_none());
        assert!(o.wraps.is_none() && o.cost.is_none());
        assert!(o.alloc.is_none() && o.unsplittable.is_none() && !o.recovered);
    }

    #[test]
    fn every_option() {
        let o = parse_ok(quote!(
            split = NdArraySplit,
            split(a = crate::A<f64>, b = B),
            ret = ::bach_runtime::Broadcast,
            gpu = "add",
            gpu_source = crate::kernels::NUMPY,
            alloc,
            unsplittable,
            wraps = ndarray::Array1::<f64>::zeros,
            cost = 2.5,
        ));
        assert_eq!(tokens(&o.split.unwrap().value), "NdArraySplit");
        let overrides = o.split_overrides.unwrap().value;
        assert_eq!(overrides.len(), 2);
        assert_eq!(overrides[0].param, "a");
        assert_eq!(tokens(&overrides[0].split), "crate :: A < f64 >");
        assert_eq!(overrides[1].param, "b");
        assert_eq!(
            tokens(&o.ret.unwrap().value),
            ":: bach_runtime :: Broadcast"
        );
        assert_eq!(o.gpu.unwrap().value.value(), "add");
        assert_eq!(
            tokens(&o.gpu_source.unwrap().value),
            "crate :: kernels :: NUMPY"
        );
        assert!(o.alloc.is_some() && o.unsplittable.is_some());
        assert_eq!(
            tokens(&o.wraps.unwrap().value),
            "ndarray :: Array1 :: < f64 > :: zeros"
        );
        assert_eq!(o.cost.unwrap().value.number(), Some(2.5));
    }

    #[test]
    fn cost_literals() {
        let cost = |attr: TokenStream| parse_ok(attr).cost.unwrap().value;
        assert_eq!(cost(quote!(cost = 2.5)).number(), Some(2.5));
        assert_eq!(cost(quote!(cost = 3)).number(), Some(3.0));
        assert_eq!(cost(quote!(cost = 1e3)).number(), Some(1000.0));
        assert_eq!(cost(quote!(cost = 0.5f32)).number(), Some(0.5));
        let negative = cost(quote!(cost = -1.0));
        assert_eq!(negative.number(), Some(-1.0));
        assert_eq!(tokens(&negative), "- 1.0");
        // Any literal parses; `valid.rs` rejects what is not a number.
        assert_eq!(cost(quote!(cost = "fast")).number(), None);
        assert_eq!(cost(quote!(cost = true)).number(), None);
        assert_eq!(parse_errors(quote!(cost = fast)), ["expected literal"]);
        assert_eq!(parse_errors(quote!(cost)), ["expected `=`"]);
        assert_eq!(
            parse_errors(quote!(cost = )),
            ["unexpected end of input, expected literal"]
        );
    }

    #[test]
    fn gpu_fn_path() {
        let o = parse_ok(quote!(gpu_fn = kernels::add::<T>));
        assert_eq!(tokens(&o.gpu_fn.unwrap().value), "kernels :: add :: < T >");
    }

    #[test]
    fn gpu_source_path() {
        let o = parse_ok(quote!(gpu = "add", gpu_source = SRC));
        assert_eq!(tokens(&o.gpu_source.unwrap().value), "SRC");
        assert_eq!(
            parse_errors(quote!(gpu_source = "numpy.cu")),
            ["expected identifier"]
        );
        assert_eq!(parse_errors(quote!(gpu_source)), ["expected `=`"]);
    }

    #[test]
    fn split_override_lookup() {
        let o = parse_ok(quote!(split(a = A, b = B)));
        let b = Ident::new("b", Span::call_site());
        let c = Ident::new("c", Span::call_site());
        assert_eq!(tokens(&o.split_override(&b).unwrap().split), "B");
        assert!(o.split_override(&c).is_none());
    }

    #[test]
    fn unknown_key_lists_the_keys() {
        assert_eq!(
            parse_errors(quote!(speed = 3)),
            ["expected one of: `split`, `ret`, `gpu`, `gpu_fn`, `gpu_source`, `alloc`, `unsplittable`, `wraps`, `cost`"]
        );
    }

    #[test]
    fn all_syntax_errors_are_reported() {
        let mut errors = Vec::new();
        let o = parse(
            quote!(speed = 3, gpu = add, split = NdArraySplit, ret),
            &mut errors,
        );
        let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            messages,
            [
                "expected one of: `split`, `ret`, `gpu`, `gpu_fn`, `gpu_source`, `alloc`, `unsplittable`, `wraps`, `cost`",
                "expected string literal",
                "expected `=`",
            ]
        );
        assert!(o.recovered);
        assert!(o.split.is_some(), "options after an error still parse");
    }

    #[test]
    fn missing_comma() {
        assert_eq!(parse_errors(quote!(alloc unsplittable)), ["expected `,`"]);
    }

    #[test]
    fn split_without_value() {
        assert_eq!(
            parse_errors(quote!(split, alloc)),
            ["expected `= SplitType` or `(param = SplitType, ...)` after `split`"]
        );
        assert_eq!(
            parse_errors(quote!(split)),
            ["unexpected end of input, expected `= SplitType` or `(param = SplitType, ...)` after `split`"]
        );
    }

    #[test]
    fn errors_inside_split_overrides_recover() {
        let mut errors = Vec::new();
        let o = parse(quote!(split(a = A, 3 = B, c C), gpu = "k"), &mut errors);
        let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(messages, ["expected identifier", "expected `=`"]);
        assert_eq!(o.split_overrides.unwrap().value.len(), 1);
        assert!(o.gpu.is_some());
    }

    #[test]
    fn duplicate_keys() {
        assert_eq!(
            parse_errors(quote!(
                split = A,
                split = B,
                split(a = A),
                split(b = B),
                ret = A,
                ret = B,
                gpu = "a",
                gpu = "b",
                gpu_fn = f,
                gpu_fn = g,
                gpu_source = a,
                gpu_source = b,
                alloc,
                alloc,
                unsplittable,
                unsplittable,
                wraps = f,
                wraps = g,
                cost = 1.0,
                cost = 2
            )),
            [
                "duplicate option `split`",
                "duplicate option `split(...)`",
                "duplicate option `ret`",
                "duplicate option `gpu`",
                "duplicate option `gpu_fn`",
                "duplicate option `gpu_source`",
                "duplicate option `alloc`",
                "duplicate option `unsplittable`",
                "duplicate option `wraps`",
                "duplicate option `cost`",
            ]
        );
    }

    #[test]
    fn duplicate_keeps_first() {
        let mut errors = Vec::new();
        let o = parse(quote!(split = A, split = B), &mut errors);
        assert_eq!(tokens(&o.split.unwrap().value), "A");
        assert!(!o.recovered, "a duplicate is not a syntax error");
    }

    #[test]
    fn duplicate_split_override() {
        assert_eq!(
            parse_errors(quote!(split(a = A, a = B))),
            ["duplicate split type for parameter `a`"]
        );
    }
}
