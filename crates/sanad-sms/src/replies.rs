//! Replies in the beneficiary's language, from Project Fluent files a translator can edit
//! without touching code: `crates/sanad-sms/locales/<tag>.ftl`, one per language, all embedded at
//! build time (adding a language is adding a file). An agency can also load its own folder of
//! `.ftl` files with [`Replies::load`].
//!
//! Bundles render without Unicode isolation marks: on a feature phone they show as boxes and,
//! in GSM-7, cannot be sent at all. Every reply the channel sends is listed in [`TEMPLATES`]
//! with worst-case values and a segment budget per language; a test renders each one in every
//! language and holds it to its budget.

use std::collections::BTreeMap;
use std::path::Path;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use unic_langid::LanguageIdentifier;

use crate::Error;

include!(concat!(env!("OUT_DIR"), "/locales.rs"));

/// The language used when nothing better is known.
pub const FALLBACK: &str = "en";

/// A value for a reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// Text (amounts are formatted with their currency before: `12.500 JOD`).
    Text(String),
    /// A count, for plural forms.
    Count(i64),
}

/// A reply the channel sends, with its values at their longest and its budget.
#[derive(Clone, Copy, Debug)]
pub struct Template {
    /// The Fluent message id.
    pub id: &'static str,
    /// Each value it takes, at its longest.
    pub worst: &'static [(&'static str, WorstValue)],
    /// The most SMS segments it may take, per language (`en`, `fr`, `ar`); other languages
    /// are held to the largest. USSD screens must fit one screen instead.
    pub budget: [usize; 3],
}

/// The longest value of a kind, for the segment test.
#[derive(Clone, Copy, Debug)]
pub enum WorstValue {
    /// An amount with its currency.
    Amount,
    /// An E.164 number.
    Phone,
    /// A log index as a reference.
    Reference,
    /// Six confirmation digits.
    Digits,
    /// Minutes to wait.
    Minutes,
    /// A count of attempts.
    Count,
    /// The last movements, as the channel lists them.
    Movements,
    /// A stable machine code.
    Code,
}

impl WorstValue {
    /// The value.
    pub fn value(self) -> Arg {
        let text = |t: &str| Arg::Text(t.to_owned());
        match self {
            // Ten million less a fil: beyond what one beneficiary or shop moves at once.
            Self::Amount => text("9999999.999 JOD"),
            Self::Phone => text("+999999999999999"),
            Self::Reference => text("9999999999"),
            Self::Digits => text("999999"),
            Self::Minutes => text("1440"),
            Self::Count => Arg::Count(9),
            Self::Movements => text("+9999999.999 12-31, -9999999.999 12-31, +9999999.999 12-31"),
            Self::Code => text("partial_redemption_not_allowed"),
        }
    }
}

use WorstValue::{Amount, Code, Count, Digits, Minutes, Movements, Phone, Reference};

/// Every reply, its worst-case values and its budget (`en`, `fr`, `ar`). Arabic travels as
/// UCS-2, 70 characters a segment: the two replies that name two amounts, a phone and a
/// reference (`paid`, `sent`) take two there; everything else fits one SMS in every language.
pub const TEMPLATES: &[Template] = &[
    Template { id: "help", worst: &[], budget: [1, 1, 1] },
    Template { id: "unknown-sender", worst: &[], budget: [1, 1, 1] },
    Template { id: "unknown-command", worst: &[], budget: [1, 1, 1] },
    Template { id: "bad-amount", worst: &[], budget: [1, 1, 1] },
    Template { id: "bad-pin", worst: &[], budget: [1, 1, 1] },
    Template { id: "balance", worst: &[("balance", Amount)], budget: [1, 1, 1] },
    Template { id: "history", worst: &[("lines", Movements)], budget: [1, 1, 1] },
    Template { id: "history-empty", worst: &[], budget: [1, 1, 1] },
    Template {
        id: "paid",
        worst: &[("amount", Amount), ("to", Phone), ("balance", Amount), ("ref", Reference)],
        budget: [1, 1, 2],
    },
    Template {
        id: "sent",
        worst: &[("amount", Amount), ("to", Phone), ("balance", Amount), ("ref", Reference)],
        budget: [1, 1, 2],
    },
    Template {
        id: "received",
        worst: &[("amount", Amount), ("from", Phone), ("balance", Amount)],
        budget: [1, 1, 1],
    },
    Template { id: "insufficient", worst: &[("balance", Amount)], budget: [1, 1, 1] },
    Template { id: "wrong-pin", worst: &[("left", Count)], budget: [1, 1, 1] },
    Template { id: "locked", worst: &[("minutes", Minutes)], budget: [1, 1, 1] },
    Template { id: "pin-changed", worst: &[], budget: [1, 1, 1] },
    Template { id: "recipient-unknown", worst: &[("to", Phone)], budget: [1, 1, 1] },
    Template { id: "not-a-vendor", worst: &[("to", Phone)], budget: [1, 1, 1] },
    Template {
        id: "redeem-waiting",
        worst: &[("amount", Amount), ("ref", Reference)],
        budget: [1, 1, 1],
    },
    Template {
        id: "redeem-confirm",
        worst: &[("amount", Amount), ("digits", Digits)],
        budget: [1, 1, 1],
    },
    Template {
        id: "redeem-done",
        worst: &[("amount", Amount), ("ref", Reference)],
        budget: [1, 1, 1],
    },
    Template {
        id: "redeem-done-beneficiary",
        worst: &[("amount", Amount), ("available", Amount)],
        budget: [1, 1, 1],
    },
    Template {
        id: "redeem-refused",
        worst: &[("amount", Amount), ("ref", Reference)],
        budget: [1, 1, 1],
    },
    Template { id: "redeem-refused-beneficiary", worst: &[], budget: [1, 1, 1] },
    Template { id: "code-typo", worst: &[], budget: [1, 1, 1] },
    Template { id: "code-unknown", worst: &[], budget: [1, 1, 1] },
    Template { id: "too-many-guesses", worst: &[("minutes", Minutes)], budget: [1, 1, 1] },
    Template { id: "voucher-expired", worst: &[], budget: [1, 1, 1] },
    Template { id: "voucher-used", worst: &[], budget: [1, 1, 1] },
    Template { id: "voucher-revoked", worst: &[], budget: [1, 1, 1] },
    Template { id: "voucher-locked", worst: &[], budget: [1, 1, 1] },
    Template { id: "voucher-busy", worst: &[], budget: [1, 1, 1] },
    Template { id: "voucher-not-here", worst: &[], budget: [1, 1, 1] },
    Template { id: "voucher-exceeded", worst: &[("available", Amount)], budget: [1, 1, 1] },
    Template { id: "voucher-whole", worst: &[("available", Amount)], budget: [1, 1, 1] },
    Template { id: "voucher-item", worst: &[], budget: [1, 1, 1] },
    Template { id: "no-pending", worst: &[], budget: [1, 1, 1] },
    Template { id: "rate-limited", worst: &[], budget: [1, 1, 1] },
    Template { id: "busy", worst: &[], budget: [1, 1, 1] },
    Template { id: "refused", worst: &[("code", Code)], budget: [1, 1, 1] },
    Template { id: "failed", worst: &[], budget: [1, 1, 1] },
];

/// The USSD screens, each of which must fit one screen.
pub const USSD_TEMPLATES: &[(&str, &[(&str, WorstValue)])] = &[
    ("ussd-menu", &[]),
    ("ussd-ask-pin", &[]),
    ("ussd-ask-phone", &[]),
    ("ussd-ask-amount", &[]),
    ("ussd-ask-digits", &[]),
    ("ussd-ask-new-pin", &[]),
    ("ussd-confirm-pay", &[("amount", Amount), ("to", Phone)]),
    ("ussd-confirm-voucher", &[]),
    ("ussd-cancelled", &[]),
    ("ussd-invalid", &[]),
];

/// The replies of every language loaded.
pub struct Replies {
    bundles: BTreeMap<String, FluentBundle<FluentResource>>,
}

impl std::fmt::Debug for Replies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.bundles.keys()).finish()
    }
}

impl Replies {
    /// The replies built into the crate (`locales/*.ftl`).
    ///
    /// # Errors
    /// [`Error::Replies`] when a file does not parse (the tests make sure none does).
    pub fn embedded() -> Result<Self, Error> {
        Self::from_sources(
            LOCALES.iter().map(|(tag, source)| ((*tag).to_owned(), (*source).to_owned())),
        )
    }

    /// Replies from a folder of `<tag>.ftl` files (an agency's own wording or languages).
    ///
    /// # Errors
    /// [`Error::Replies`] for an unreadable folder or file, or one that does not parse.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let problem = |what: String| Error::Replies(what);
        let mut sources = Vec::new();
        let entries =
            std::fs::read_dir(dir).map_err(|e| problem(format!("{}: {e}", dir.display())))?;
        for entry in entries {
            let path = entry.map_err(|e| problem(e.to_string()))?.path();
            if path.extension().is_some_and(|ext| ext == "ftl")
                && let Some(tag) = path.file_stem().and_then(|s| s.to_str())
            {
                let source = std::fs::read_to_string(&path)
                    .map_err(|e| problem(format!("{}: {e}", path.display())))?;
                sources.push((tag.to_owned(), source));
            }
        }
        Self::from_sources(sources.into_iter())
    }

    fn from_sources(sources: impl Iterator<Item = (String, String)>) -> Result<Self, Error> {
        let mut bundles = BTreeMap::new();
        for (tag, source) in sources {
            let language: LanguageIdentifier =
                tag.parse().map_err(|_| Error::Replies(format!("{tag} is not a language tag")))?;
            let resource = FluentResource::try_new(source)
                .map_err(|(_, errors)| Error::Replies(format!("{tag}.ftl: {errors:?}")))?;
            let mut bundle = FluentBundle::new_concurrent(vec![language]);
            bundle.set_use_isolating(false);
            bundle
                .add_resource(resource)
                .map_err(|errors| Error::Replies(format!("{tag}.ftl: {errors:?}")))?;
            bundles.insert(tag, bundle);
        }
        if !bundles.contains_key(FALLBACK) {
            return Err(Error::Replies(format!("no {FALLBACK}.ftl, the fallback language")));
        }
        Ok(Self { bundles })
    }

    /// The languages loaded, by tag.
    pub fn languages(&self) -> impl Iterator<Item = &str> {
        self.bundles.keys().map(String::as_str)
    }

    /// The best language for a preference such as `ar`, `fr-SN` or `AR`: the same tag, or its
    /// primary language, or the fallback.
    pub fn pick(&self, preferred: Option<&str>) -> &str {
        let Some(preferred) = preferred.map(str::to_ascii_lowercase) else { return FALLBACK };
        let primary = preferred.split(['-', '_']).next().unwrap_or_default().to_owned();
        for candidate in [preferred, primary] {
            if let Some((tag, _)) = self.bundles.get_key_value(&candidate) {
                return tag;
            }
        }
        FALLBACK
    }

    /// Whether `language` has the message `id`.
    pub fn has(&self, language: &str, id: &str) -> bool {
        self.bundles.get(language).is_some_and(|bundle| bundle.has_message(id))
    }

    /// A reply in `language` (falling back to English for a message a translation lacks).
    pub fn render(&self, language: &str, id: &str, args: &[(&str, Arg)]) -> String {
        let mut fluent_args = FluentArgs::new();
        for (name, value) in args {
            match value {
                Arg::Text(text) => fluent_args.set(*name, FluentValue::from(text.as_str())),
                Arg::Count(count) => fluent_args.set(*name, FluentValue::from(*count)),
            }
        }
        for tag in [language, FALLBACK] {
            let Some(bundle) = self.bundles.get(tag) else { continue };
            let Some(pattern) = bundle.get_message(id).and_then(|message| message.value()) else {
                continue;
            };
            let mut errors = Vec::new();
            let text = bundle.format_pattern(pattern, Some(&fluent_args), &mut errors);
            return text.trim().to_owned();
        }
        id.to_owned()
    }

    /// [`Self::render`] with a template's worst-case values.
    pub fn render_worst(&self, language: &str, id: &str, worst: &[(&str, WorstValue)]) -> String {
        let args: Vec<(&str, Arg)> =
            worst.iter().map(|(name, kind)| (*name, kind.value())).collect();
        self.render(language, id, &args)
    }
}
