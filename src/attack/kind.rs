//! Which attack a run is: [`AttackKind`], as named on the command line, in result files and in
//! tables. A leaf: the rules, specs and tables name attacks through it.

use std::fmt;

/// Declares [`AttackKind`] from one row per attack: its variant, its name on the command line
/// and in files, and its label in tables. A new attack is one row here (and its rule in
/// `rules/`).
macro_rules! attack_kinds {
    ($($(#[doc = $doc:literal])* $variant:ident: $name:literal, $label:literal;)+) => {
        /// The attacks `anu` implements.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
        pub enum AttackKind {
            $(
                $(#[doc = $doc])*
                #[serde(rename = $name)]
                #[value(name = $name)]
                $variant,
            )+
        }

        impl AttackKind {
            /// Every attack, in table order (the baseline first).
            pub const ALL: [AttackKind; [$($name),+].len()] = [$(AttackKind::$variant),+];

            /// Lower-case name, as on the command line and in file names.
            pub fn name(self) -> &'static str {
                match self {
                    $(AttackKind::$variant => $name,)+
                }
            }

            /// Upper-case name, as in tables and legends.
            pub fn label(self) -> &'static str {
                match self {
                    $(AttackKind::$variant => $label,)+
                }
            }
        }
    };
}

attack_kinds! {
    /// Decoupled Direction and Norm (Rony et al. 2019; the paper's Alg. 1).
    Ddn: "ddn", "DDN";
    /// Self-adaptive Norm Update (the paper's Alg. 2).
    Anu: "anu", "ANU";
    /// Fast Minimum-Norm attack, L2 (Pintor et al. 2021).
    Fmn: "fmn", "FMN";
}

impl AttackKind {
    /// The attacks the paper compares.
    pub const PAPER: [AttackKind; 2] = [AttackKind::Ddn, AttackKind::Anu];
}

impl fmt::Display for AttackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attack_names_parse_on_the_command_line_and_in_json() {
        use clap::ValueEnum;
        for kind in AttackKind::ALL {
            assert_eq!(AttackKind::from_str(kind.name(), false), Ok(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
        }
        assert!(AttackKind::from_str("fgsm", false).is_err());
    }
}
