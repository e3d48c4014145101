//! The `#[handler]` attribute of [`ketch-sdk`](https://docs.rs/ketch-sdk): see
//! `ketch_sdk::handler` for its documentation.

use proc_macro::TokenStream;
use quote::quote;
use syn::{ItemFn, parse_macro_input};

/// Exports a function as the component's `wasi:http/incoming-handler`.
///
/// The function takes one `ketch_sdk::Request` and returns anything that implements
/// `ketch_sdk::IntoResponse`; it may be `async`. One per component.
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[ketch_sdk::handler] takes no arguments",
        )
        .to_compile_error()
        .into();
    }
    let func = parse_macro_input!(item as ItemFn);
    if let Err(e) = check(&func) {
        return e.to_compile_error().into();
    }
    let name = &func.sig.ident;
    let serve = if func.sig.asyncness.is_some() {
        quote!(::ketch_sdk::__private::serve_async(request, response_out, #name))
    } else {
        quote!(::ketch_sdk::__private::serve(request, response_out, #name))
    };
    quote! {
        #func

        #[doc(hidden)]
        struct __KetchSdkHandler;

        impl ::ketch_sdk::__private::wasip2::exports::http::incoming_handler::Guest
            for __KetchSdkHandler
        {
            fn handle(
                request: ::ketch_sdk::__private::wasip2::http::types::IncomingRequest,
                response_out: ::ketch_sdk::__private::wasip2::http::types::ResponseOutparam,
            ) {
                #serve
            }
        }

        ::ketch_sdk::__private::wasip2::http::proxy::export!(
            __KetchSdkHandler with_types_in ::ketch_sdk::__private::wasip2
        );
    }
    .into()
}

fn check(func: &ItemFn) -> syn::Result<()> {
    let sig = &func.sig;
    if sig.inputs.len() != 1 {
        return Err(syn::Error::new_spanned(
            &sig.inputs,
            "a #[ketch_sdk::handler] function takes exactly one argument: `req: ketch_sdk::Request`",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            "a #[ketch_sdk::handler] function cannot be generic",
        ));
    }
    Ok(())
}
