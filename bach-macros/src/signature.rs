//! The annotated item and the model of its signature.
//!
//! [`FnSignature::analyse`] is lenient: it models what it can (parameters with a
//! plain identifier pattern) and leaves the reporting of everything else to
//! `valid.rs`, which runs before any code is generated.

use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Block, FnArg, Ident, Pat, Signature, Token, Type, Visibility};

/// A function item, with or without a body (`wraps` annotates bodyless declarations).
pub(crate) struct OffloadItem {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub sig: Signature,
    pub body: Option<Box<Block>>,
    pub semi: Option<Token![;]>,
}

impl Parse for OffloadItem {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let starts_fn = input.peek(Token![fn])
            || input.peek(Token![const])
            || input.peek(Token![async])
            || input.peek(Token![unsafe])
            || input.peek(Token![extern]);
        if !starts_fn {
            return Err(input.error("`#[offload]` can only be applied to free functions"));
        }
        let sig: Signature = input.parse()?;
        let (body, semi) = if input.peek(Token![;]) {
            (None, Some(input.parse()?))
        } else {
            (Some(Box::new(input.parse()?)), None)
        };
        Ok(OffloadItem {
            attrs,
            vis,
            sig,
            body,
            semi,
        })
    }
}

/// How a parameter is passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `n: T`: owned; broadcast (cloned) to every batch by default.
    Owned,
    /// `a: &T`: borrowed, read.
    Borrowed,
    /// `a: &mut T`: mutated in place; the stub takes `&mut Lazy<T>`.
    Mutated,
}

/// One parameter of the annotated function.
#[derive(Debug, Clone)]
pub(crate) struct Param {
    /// Position in the declaration, counting all parameters.
    pub index: usize,
    pub name: Ident,
    pub mode: Mode,
    /// The type without its reference: `Array1<T>` for `&Array1<T>`.
    pub base: Type,
    /// The full declared type, for error spans.
    pub ty: Type,
}

/// The model of an annotated function's signature.
#[derive(Debug, Clone)]
pub(crate) struct FnSignature {
    pub name: Ident,
    /// The parameters with a plain identifier pattern; `valid.rs` reports the others.
    pub params: Vec<Param>,
    /// The number of declared parameters, receivers and other patterns included.
    pub arity: usize,
    /// The return type as declared; `None` for `()` written as nothing.
    pub ret: Option<Type>,
    /// Whether the return type is a `Result`, read from its syntax.
    pub returns: Returns,
}

/// What the declared return type says about failure. Read from the syntax
/// alone (a macro sees no types): any path whose last segment is `Result`.
#[derive(Debug, Clone)]
pub(crate) enum Returns {
    /// A value, or nothing: the stub's lazy value has the declared type.
    Value,
    /// `Result<T, E>` (`std::result::Result<T, E>` too): the lazy value is a
    /// `T`, and an `Err(E)` fails the evaluation.
    Fallible { ok: Box<Type>, err: Box<Type> },
    /// A `Result` without two type arguments, such as the alias
    /// `io::Result<T>`: the error type is not written out. `valid.rs` reports it.
    ResultAlias,
}

impl FnSignature {
    pub fn analyse(sig: &Signature) -> FnSignature {
        let params = sig
            .inputs
            .iter()
            .enumerate()
            .filter_map(|(index, arg)| {
                let FnArg::Typed(pat_type) = arg else {
                    return None;
                };
                let name = param_name(&pat_type.pat)?.clone();
                let ty = (*pat_type.ty).clone();
                let (mode, base) = match ungroup(&ty) {
                    Type::Reference(r) if r.mutability.is_some() => {
                        (Mode::Mutated, (*r.elem).clone())
                    }
                    Type::Reference(r) => (Mode::Borrowed, (*r.elem).clone()),
                    _ => (Mode::Owned, ty.clone()),
                };
                Some(Param {
                    index,
                    name,
                    mode,
                    base,
                    ty,
                })
            })
            .collect();
        let ret = match &sig.output {
            syn::ReturnType::Default => None,
            syn::ReturnType::Type(_, ty) => Some((**ty).clone()),
        };
        let returns = ret.as_ref().map_or(Returns::Value, returns);
        FnSignature {
            name: sig.ident.clone(),
            params,
            arity: sig.inputs.len(),
            ret,
            returns,
        }
    }

    /// The type of the stub's lazy value: the declared return type, or `T`
    /// of `Result<T, E>`; `None` for `()` written as nothing.
    pub fn value_type(&self) -> Option<&Type> {
        match &self.returns {
            Returns::Fallible { ok, .. } => Some(&**ok),
            Returns::Value | Returns::ResultAlias => self.ret.as_ref(),
        }
    }

    /// True for a function whose lazy value is nothing, or `()` (`Result<(), E>` too).
    pub fn returns_unit(&self) -> bool {
        match self.value_type().map(ungroup) {
            None => true,
            Some(Type::Tuple(t)) => t.elems.is_empty(),
            Some(_) => false,
        }
    }
}

/// Reads `ty` as a `Result`, or not.
fn returns(ty: &Type) -> Returns {
    let Type::Path(path) = ungroup(ty) else {
        return Returns::Value;
    };
    let Some(last) = path.path.segments.last() else {
        return Returns::Value;
    };
    if path.qself.is_some() || last.ident != "Result" {
        return Returns::Value;
    }
    let types: Vec<&Type> = match &last.arguments {
        syn::PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter_map(|arg| match arg {
                syn::GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    match types[..] {
        [ok, err] => Returns::Fallible {
            ok: Box::new(ok.clone()),
            err: Box::new(err.clone()),
        },
        _ => Returns::ResultAlias,
    }
}

/// The name bound by a plain identifier pattern (`a` or `mut a`), or `None`.
pub(crate) fn param_name(pat: &Pat) -> Option<&Ident> {
    match pat {
        Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => Some(&p.ident),
        _ => None,
    }
}

/// Looks through invisible groups and parentheses around a type.
pub(crate) fn ungroup(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => ungroup(&g.elem),
        Type::Paren(p) => ungroup(&p.elem),
        _ => ty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::{quote, ToTokens};

    fn item(tokens: proc_macro2::TokenStream) -> OffloadItem {
        syn::parse2(tokens).expect("item parses")
    }

    #[test]
    fn parses_bodies_and_declarations() {
        let with_body = item(quote!(
            /// Docs.
            #[inline]
            pub fn add(a: &A, b: &A) -> A {
                a + b
            }
        ));
        assert_eq!(with_body.attrs.len(), 2);
        assert!(matches!(with_body.vis, Visibility::Public(_)));
        assert!(with_body.body.is_some() && with_body.semi.is_none());

        let declaration = item(quote!(
            pub(crate) fn add<T: Float>(a: &A<T>) -> A<T>;
        ));
        assert!(declaration.body.is_none() && declaration.semi.is_some());
        assert!(matches!(declaration.vis, Visibility::Restricted(_)));
    }

    #[test]
    fn rejects_non_functions() {
        let err = syn::parse2::<OffloadItem>(quote!(
            pub struct S;
        ))
        .err()
        .unwrap();
        assert_eq!(
            err.to_string(),
            "`#[offload]` can only be applied to free functions"
        );
    }

    #[test]
    fn models_parameters() {
        let it = item(quote!(
            fn f<T: Float, U>(
                a: &Array1<T>,
                mut n: usize,
                out: &mut Array1<T>,
                s: (T),
            ) -> Array1<T> {
            }
        ));
        let sig = FnSignature::analyse(&it.sig);
        assert_eq!(sig.name, "f");
        assert_eq!(sig.arity, 4);
        let modes: Vec<_> = sig
            .params
            .iter()
            .map(|p| (p.name.to_string(), p.mode, p.index))
            .collect();
        assert_eq!(
            modes,
            [
                ("a".to_string(), Mode::Borrowed, 0),
                ("n".to_string(), Mode::Owned, 1),
                ("out".to_string(), Mode::Mutated, 2),
                ("s".to_string(), Mode::Owned, 3),
            ]
        );
        assert_eq!(
            sig.params[0].base.to_token_stream().to_string(),
            "Array1 < T >"
        );
        assert_eq!(
            sig.params[2].base.to_token_stream().to_string(),
            "Array1 < T >"
        );
        assert_eq!(sig.params[1].base.to_token_stream().to_string(), "usize");
        assert_eq!(sig.ret.to_token_stream().to_string(), "Array1 < T >");
    }

    #[test]
    fn skips_unmodelled_parameters() {
        let it = item(quote!(
            fn f((x, y): (f64, f64), ref r: f64, b: &B) {}
        ));
        let sig = FnSignature::analyse(&it.sig);
        assert_eq!(sig.arity, 3);
        assert_eq!(sig.params.len(), 1);
        assert_eq!(
            sig.params[0].index, 2,
            "indices count every declared parameter"
        );
        assert!(sig.ret.is_none());
        assert!(sig.returns_unit());
    }

    #[test]
    fn unit_returns() {
        for (item, unit) in [
            (
                quote!(
                    fn f() {}
                ),
                true,
            ),
            (
                quote!(
                    fn f() -> () {}
                ),
                true,
            ),
            (
                quote!(
                    fn f() -> u8 {
                        0
                    }
                ),
                false,
            ),
            (
                quote!(
                    fn f() -> (u8,) {
                        (0,)
                    }
                ),
                false,
            ),
        ] {
            assert_eq!(
                FnSignature::analyse(&super::tests::item(item).sig).returns_unit(),
                unit
            );
        }
    }

    #[test]
    fn results_are_read_from_the_syntax() {
        let returns = |ret: proc_macro2::TokenStream| {
            let sig = FnSignature::analyse(&item(quote!(fn f() -> #ret;)).sig);
            let value = sig.value_type().map(|t| t.to_token_stream().to_string());
            let unit = sig.returns_unit();
            match sig.returns {
                Returns::Value => format!("value {value:?} {unit}"),
                Returns::Fallible { ok, err } => format!(
                    "fallible {} {} {unit}",
                    ok.to_token_stream(),
                    err.to_token_stream()
                ),
                Returns::ResultAlias => "alias".to_string(),
            }
        };
        assert_eq!(returns(quote!(Result<A, E>)), "fallible A E false");
        assert_eq!(
            returns(quote!(::std::result::Result<Vec<T>, my::Error>)),
            "fallible Vec < T > my :: Error false"
        );
        assert_eq!(
            returns(quote!(Result<(A, B), E>)),
            "fallible (A , B) E false"
        );
        assert_eq!(returns(quote!(Result<(), E>)), "fallible () E true");
        assert_eq!(returns(quote!(io::Result<A>)), "alias");
        assert_eq!(returns(quote!(std::fmt::Result)), "alias");
        assert_eq!(returns(quote!(Result<A, B, C>)), "alias");
        assert_eq!(
            returns(quote!(Results<A, E>)),
            "value Some(\"Results < A , E >\") false"
        );
        assert_eq!(
            returns(quote!(Option<A>)),
            "value Some(\"Option < A >\") false"
        );
        assert_eq!(
            returns(quote!(<T as Tr>::Result)),
            "value Some(\"< T as Tr > :: Result\") false"
        );
    }
}
