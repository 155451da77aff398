//! Plain CPU libraries, usable without Bach.

pub mod numpy;
