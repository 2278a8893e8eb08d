//! Owners of the C handles a compiled model holds. Each destroys its handle exactly
//! once, on drop; [`super::CompiledModel`] declares them in the order LiteRT needs them
//! released (the compiled model before its options, both before the model).

use crate::litert::ffi;

/// An owned LiteRT handle of type `$raw`, released with `$destroy`.
macro_rules! owned_handle {
    ($(#[$doc:meta])* $name:ident, $raw:ty, $destroy:ident) => {
        $(#[$doc])*
        pub(super) struct $name {
            api: &'static ffi::Api,
            raw: $raw,
        }

        impl $name {
            /// Takes ownership of `raw`; `None` if it is null.
            ///
            /// # Safety
            /// `raw` is null or a live handle made by the LiteRtCreate* call matching
            /// `$destroy` through `api`, owned by nobody else.
            pub(super) unsafe fn from_raw(api: &'static ffi::Api, raw: $raw) -> Option<Self> {
                (!raw.is_null()).then_some($name { api, raw })
            }

            pub(super) fn raw(&self) -> $raw {
                self.raw
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                // SAFETY: `raw` is live and ours alone (`from_raw`'s contract); it is
                // destroyed once, here. What depends on it is released first: see the
                // field order of `CompiledModel`.
                unsafe { (self.api.$destroy)(self.raw) }
            }
        }
    };
}

owned_handle!(
    /// A LiteRT model (`LiteRtCreateModelFromFile` / `…FromBuffer`).
    ModelHandle,
    ffi::Model,
    LiteRtDestroyModel
);
owned_handle!(
    /// Compilation options (`LiteRtCreateOptions`).
    OptionsHandle,
    ffi::Options,
    LiteRtDestroyOptions
);
owned_handle!(
    /// A compiled model (`LiteRtCreateCompiledModel`).
    CompiledHandle,
    ffi::CompiledModel,
    LiteRtDestroyCompiledModel
);
owned_handle!(
    /// Opaque options (`LiteRtCreateOpaqueOptions`) until handed to an options object.
    OpaqueHandle,
    ffi::OpaqueOptions,
    LiteRtDestroyOpaqueOptions
);

impl OpaqueHandle {
    /// Gives up ownership (the options object it was added to owns it now).
    pub(super) fn into_raw(self) -> ffi::OpaqueOptions {
        let raw = self.raw;
        std::mem::forget(self);
        raw
    }
}
