//! Every reply in every language, with its values at their longest, measured as it will travel
//! (GSM-7 or UCS-2) and held to its declared segment budget; every USSD screen fits a screen;
//! every language has every message; nothing renders with isolation marks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sanad_sms::gsm::{Encoding, fits_ussd_screen, measure};
use sanad_sms::replies::{Replies, TEMPLATES, USSD_TEMPLATES};

#[test]
fn every_reply_in_every_language_keeps_to_its_segment_budget() {
    let replies = Replies::embedded().unwrap();
    let languages: Vec<&str> = replies.languages().collect();
    assert!(["ar", "en", "fr"].iter().all(|tag| languages.contains(tag)), "{languages:?}");
    let mut over = Vec::new();
    for template in TEMPLATES {
        for language in &languages {
            assert!(replies.has(language, template.id), "{language}.ftl lacks {}", template.id);
            let text = replies.render_worst(language, template.id, template.worst);
            assert!(
                !text.contains(['\u{2068}', '\u{2069}']),
                "isolation marks in {language} {}",
                template.id
            );
            assert!(
                !text.contains('{') && !text.contains("$"),
                "unfilled value in {language} {}: {text}",
                template.id
            );
            let budget = match *language {
                "en" => template.budget[0],
                "fr" => template.budget[1],
                "ar" => template.budget[2],
                _ => *template.budget.iter().max().unwrap(),
            };
            let measured = measure(&text);
            println!(
                "{language} {:<28} {:?} {:>3} units, {} segment(s)",
                template.id, measured.encoding, measured.units, measured.segments
            );
            if measured.segments > budget {
                over.push(format!(
                    "{language} {} takes {} segments (budget {budget}): {text}",
                    template.id, measured.segments
                ));
            }
            if *language != "ar" && measured.encoding == Encoding::Ucs2 {
                over.push(format!("{language} {} needs UCS-2: {text}", template.id));
            }
        }
    }
    assert!(over.is_empty(), "{}", over.join("\n"));
}

#[test]
fn every_ussd_screen_fits_one_screen() {
    let replies = Replies::embedded().unwrap();
    for language in replies.languages() {
        for (id, worst) in USSD_TEMPLATES {
            assert!(replies.has(language, id), "{language}.ftl lacks {id}");
            let text = replies.render_worst(language, id, worst);
            assert!(fits_ussd_screen(&text), "{language} {id} does not fit a screen: {text}");
        }
    }
}

#[test]
fn plural_forms_follow_each_language() {
    let replies = Replies::embedded().unwrap();
    let left = |language: &str, n: i64| {
        replies.render(language, "wrong-pin", &[("left", sanad_sms::replies::Arg::Count(n))])
    };
    assert!(left("en", 1).ends_with("1 attempt left."));
    assert!(left("en", 2).ends_with("2 attempts left."));
    assert!(left("fr", 1).ends_with("Encore 1 essai."));
    assert!(left("ar", 2).ends_with("بقيت محاولتان."));
    assert!(left("ar", 3).ends_with("بقيت 3 محاولات."));
    assert_eq!(replies.pick(Some("AR-jo")), "ar");
    assert_eq!(replies.pick(Some("sw")), "en");
}
