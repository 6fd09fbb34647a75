//! The destination types segrelay knows.

use super::{amberflo, kable, orb};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Amberflo,
    Orb,
    Kable,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Amberflo, Kind::Orb, Kind::Kable];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Amberflo => "amberflo",
            Kind::Orb => "orb",
            Kind::Kable => "kable",
        }
    }

    /// The key in a Segment `integrations` object.
    pub fn display_name(self) -> &'static str {
        match self {
            Kind::Amberflo => "Amberflo",
            Kind::Orb => "Orb",
            Kind::Kable => "Kable",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Events per request: the default, and the most segrelay will put in one.
    pub fn batch_sizes(self) -> (usize, usize) {
        match self {
            Kind::Amberflo => (amberflo::DEFAULT_BATCH, amberflo::MAX_BATCH),
            Kind::Orb => (orb::DEFAULT_BATCH, orb::MAX_BATCH),
            Kind::Kable => (kable::DEFAULT_BATCH, kable::MAX_BATCH),
        }
    }
}
