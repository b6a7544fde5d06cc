//! Hookflash calling core.
#![warn(missing_docs)]

pub mod sip;
