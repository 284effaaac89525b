//! Pictures of results: contact sheets of clusters.

mod contact_sheet;
mod glyphs;

pub use contact_sheet::{contact_sheet, ContactSheet};
