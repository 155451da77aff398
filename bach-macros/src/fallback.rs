//! The expansion on error: the user's function as written, beside every error, so
//! that later errors and IDEs keep working.

use proc_macro2::TokenStream;
use quote::quote;

use crate::signature::OffloadItem;

/// `item` re-emitted, followed by `errors` as `compile_error!`s.
pub(crate) fn expand(item: TokenStream, errors: Vec<syn::Error>) -> TokenStream {
    let mut tokens = reemit(item);
    for error in errors {
        tokens.extend(error.to_compile_error());
    }
    tokens
}

/// The item as written. A bodyless declaration (not valid Rust on its own) gets a
/// body that never runs.
fn reemit(item: TokenStream) -> TokenStream {
    match syn::parse2::<OffloadItem>(item.clone()) {
        Ok(OffloadItem {
            attrs,
            vis,
            sig,
            body: None,
            ..
        }) => quote! {
            #(#attrs)*
            #[allow(unused_variables)]
            #vis #sig { ::core::unimplemented!() }
        },
        _ => item,
    }
}
