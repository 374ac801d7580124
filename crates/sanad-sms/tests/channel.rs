//! The channel end to end, with Twilio payloads signed as Twilio signs them: balance, history,
//! payments to a shop and to a person (with notices in the recipient's language), a voucher
//! redeemed by a shop and confirmed by the beneficiary's SMS, retries answered and never
//! applied twice, unknown senders and forged requests changing nothing, and the limits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sanad_engine::registry::NewPerson;
use sanad_engine::{Agency, Options, VoucherPlan};
use sanad_ledger::{Actor, Command, ProgrammeKind, Vendors};
use sanad_money::{Amount, Currency, Id};
use sanad_sms::gateway::{GatewayError, twilio};
use sanad_sms::replies::Replies;
use sanad_sms::{Channel, ChannelOptions, Outcome};
use zeroize::Zeroizing;

const TOKEN: &[u8] = b"twilio-auth-token";
const URL: &str = "https://sanad.example.org/v1/sms/twilio";
const START_MS: u64 = 1_780_000_000_000;

fn jod(text: &str) -> Amount {
    Amount::parse(text, Currency::parse("JOD").unwrap()).unwrap()
}

struct World {
    _dir: tempfile::TempDir,
    /// `None` only while restarting.
    channel: Option<Channel>,
    agency: Arc<Agency>,
    clock: Arc<AtomicU64>,
    shop: Id,
    amal: Id,
    omar: Id,
    voucher_code: String,
    sent: u64,
}

impl World {
    fn channel(agency: &Arc<Agency>, dir: &std::path::Path, clock: &Arc<AtomicU64>) -> Channel {
        let ticking = Arc::clone(clock);
        let channel_options = ChannelOptions {
            clock: Arc::new(move || ticking.load(Ordering::SeqCst)),
            ..ChannelOptions::default()
        };
        Channel::open(Arc::clone(agency), dir, Replies::embedded().unwrap(), channel_options)
            .unwrap()
    }

    /// A new channel over the same agency and folder, as after a restart of the server.
    fn restart_channel(&mut self) {
        self.channel = None; // closes its store first
        self.channel = Some(Self::channel(&self.agency, self._dir.path(), &self.clock));
    }

    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(AtomicU64::new(START_MS));
        let ticking = Arc::clone(&clock);
        let options = Options {
            clock: Arc::new(move || ticking.load(Ordering::SeqCst)),
            ..Options::default()
        };
        let agency =
            Arc::new(Agency::create(dir.path(), "example.org/sms", Some("JO"), options).unwrap());
        let person = |phone: &str, language: &str| NewPerson {
            phone: phone.into(),
            name: Some("Test".into()),
            language: Some(language.into()),
            pin: Some(Zeroizing::new("4821".into())),
            ..NewPerson::default()
        };
        let currency = Currency::parse("JOD").unwrap();
        let amal = agency.register(&person("+962791234567", "ar"), currency).unwrap();
        let omar = agency.register(&person("+962791234568", "fr"), currency).unwrap();
        let cash = agency.create_programme("Cash", ProgrammeKind::Cash, jod("1000")).unwrap();
        agency
            .ledger()
            .execute(Command::Transfer {
                id: Id::parse("t-amal").unwrap(),
                from: cash.clone(),
                to: Agency::wallet_of(&amal, currency),
                amount: jod("50"),
                programme: cash,
                actor: Actor::Operator,
                reference: None,
            })
            .unwrap()
            .unwrap();
        let shop = agency.open_vendor(currency, &[], Some("0771234567")).unwrap();
        let plan = VoucherPlan {
            valid_from_ms: START_MS,
            valid_until_ms: START_MS + 90 * 86_400_000,
            vendors: Vendors::Enrolled,
            single_use: false,
            partial: true,
            items: Vec::new(),
            pin_attempts: 3,
            lock_ms: 30 * 60_000,
        };
        let vouchers = agency
            .create_voucher_programme("Food", ProgrammeKind::ValueVoucher, jod("500"), &plan)
            .unwrap();
        agency.enrol_vendor(&vouchers, &shop, BTreeMap::new()).unwrap();
        let voucher = agency.issue_voucher(&vouchers, &amal, Some(jod("40")), Vec::new()).unwrap();
        let channel = Self::channel(&agency, dir.path(), &clock);
        Self {
            _dir: dir,
            channel: Some(channel),
            agency,
            clock,
            shop,
            amal,
            omar,
            voucher_code: voucher.code.letters(),
            sent: 0,
        }
    }

    /// A Twilio webhook body for a message, with its signature.
    fn webhook(&mut self, from: &str, body: &str) -> (String, String) {
        self.sent += 1;
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("MessageSid", &format!("SM{:032x}", self.sent))
            .append_pair("AccountSid", "AC0123456789abcdef0123456789abcdef")
            .append_pair("From", from)
            .append_pair("To", "+96264000000")
            .append_pair("Body", body)
            .append_pair("NumSegments", "1")
            .append_pair("ApiVersion", "2010-04-01")
            .finish();
        let signature =
            twilio::signature(TOKEN, URL, &sanad_sms::gateway::form_pairs(form.as_bytes()));
        (form, signature)
    }

    fn deliver(&self, form: &str, signature: &str) -> Outcome {
        let inbound = twilio::parse(TOKEN, URL, Some(signature), form.as_bytes()).unwrap();
        self.channel.as_ref().unwrap().handle(&inbound).unwrap()
    }

    fn sms(&mut self, from: &str, body: &str) -> Outcome {
        let (form, signature) = self.webhook(from, body);
        self.deliver(&form, &signature)
    }

    fn balance(&self, account: &Id) -> Amount {
        self.agency.ledger().account(account).unwrap().available()
    }

    fn wallet(&self, person: &Id) -> Id {
        Agency::wallet_of(person, Currency::parse("JOD").unwrap())
    }
}

const AMAL: &str = "+962791234567";
const OMAR: &str = "+962791234568";
const SHOP: &str = "+962771234567";

#[test]
fn balance_in_the_keywords_language_and_retries_answered_once() {
    let mut world = World::new();
    let english = world.sms(AMAL, "BAL 4821");
    assert_eq!(english.reply, "Your balance: 50.000 JOD");
    let arabic = world.sms(AMAL, "رصيد ٤٨٢١");
    assert_eq!(arabic.reply, "رصيدك: 50.000 JOD");
    // No keyword language (PIN is shared): the person's preference, Arabic.
    let (form, signature) = world.webhook(AMAL, "pin 4821 4822");
    let first = world.deliver(&form, &signature);
    assert_eq!(first.reply, "تم تغيير رمزك السري.");
    let again = world.deliver(&form, &signature);
    assert!(again.replayed && again.reply == first.reply, "a retried delivery gets the same reply");
    assert_eq!(world.sms(AMAL, "BAL 4822").reply, "Your balance: 50.000 JOD");
}

#[test]
fn payments_move_money_once_and_notify_the_other_side() {
    let mut world = World::new();
    let size = world.agency.ledger().size();
    let (form, signature) = world.webhook(AMAL, "pay 0771234567 12,5 4821");
    let paid = world.deliver(&form, &signature);
    assert!(
        paid.reply.starts_with("Paid 12.500 JOD to +962771234567. Balance: 37.500 JOD. Ref "),
        "{}",
        paid.reply
    );
    assert_eq!(paid.notices.len(), 1);
    assert_eq!(paid.notices[0].to, SHOP);
    assert!(paid.notices[0].text.contains("+96279*****67"), "the shop sees a masked number");
    for _ in 0..3 {
        let retried = world.deliver(&form, &signature);
        assert_eq!((retried.reply.as_str(), retried.replayed), (paid.reply.as_str(), true));
        assert!(retried.notices.is_empty());
    }
    assert_eq!(world.balance(&world.shop), jod("12.5"));
    assert_eq!(world.agency.ledger().size(), size + 1, "one transfer for four deliveries");

    let sent = world.sms(AMAL, "ENVOYER 0791234568 2,5 4821");
    assert!(sent.reply.starts_with("Envoye 2.500 JOD a +962791234568."), "{}", sent.reply);
    assert_eq!(sent.notices[0].to, OMAR);
    assert!(sent.notices[0].text.starts_with("Vous avez recu 2.500 JOD"), "in Omar's French");
    assert_eq!(world.balance(&world.wallet(&world.omar)), jod("2.5"));
    let too_much = world.sms(AMAL, "PAY 0771234567 100 4821");
    assert_eq!(too_much.reply, "Not enough money. Your balance is 35.000 JOD.");
    let history = world.sms(AMAL, "HIST 4821");
    assert!(history.reply.starts_with("Last: +50.000 "), "{}", history.reply);
    assert!(
        history.reply.contains("-12.500") && history.reply.contains("-2.500"),
        "{}",
        history.reply
    );

    // Every message above carried the PIN; the channel stored replies only. (That no PIN
    // reaches the log is the agency tests' check; its random commitments would make a byte
    // search here fail once in a few hundred runs.)
    let mut stored = Vec::new();
    for entry in walk(&world._dir.path().join(sanad_sms::channel::ANSWERS_DIR)) {
        stored.extend(std::fs::read(entry).unwrap());
    }
    assert!(!stored.is_empty());
    assert!(!stored.windows(4).any(|w| w == b"4821"), "a PIN in the channel's store");
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_shop_redeems_a_voucher_and_the_beneficiary_confirms_by_sms() {
    let mut world = World::new();
    let code = world.voucher_code.clone();
    let mut typo: Vec<char> = code.chars().collect();
    typo[0] = if typo[0] == '7' { '8' } else { '7' };
    let typo: String = typo.into_iter().collect();
    assert_eq!(
        world.sms(SHOP, &format!("REDEEM {typo} 10")).reply,
        "The voucher code has a typo. Please check it and send it again."
    );
    let asked = world.sms(SHOP, &format!("redeem {} 10", code.replace('-', " ")));
    assert!(asked.reply.starts_with("Voucher: 10.000 JOD requested."), "{}", asked.reply);
    let notice = &asked.notices[0];
    assert_eq!(notice.to, AMAL);
    assert!(notice.text.starts_with("متجر طلب 10.000 JOD"), "{}", notice.text);
    let digits: String = notice.text.chars().filter(char::is_ascii_digit).skip(5).take(6).collect();
    assert_eq!(digits.len(), 6);
    // A wrong answer counts; the right one pays the shop.
    // (An English keyword: an English reply.)
    assert_eq!(world.sms(AMAL, "YES 000000").reply, "Wrong PIN. 2 attempts left.");
    let done = world.sms(AMAL, &format!("نعم {digits}"));
    assert!(done.reply.starts_with("دفعت 10.000 JOD من قسيمتك"), "{}", done.reply);
    assert_eq!(done.notices[0].to, SHOP);
    assert!(done.notices[0].text.starts_with("Voucher payment of 10.000 JOD confirmed."));
    assert_eq!(world.balance(&world.shop), jod("10"));
    assert_eq!(
        world.sms(AMAL, &format!("YES {digits}")).reply,
        "No payment is waiting for your answer."
    );
    // Refusal releases the hold.
    let asked = world.sms(SHOP, &format!("REDEEM {code} 5"));
    let digits: String =
        asked.notices[0].text.chars().filter(char::is_ascii_digit).skip(4).take(6).collect();
    let refused = world.sms(AMAL, &format!("لا {digits}"));
    assert_eq!(refused.reply, "تم الرفض. لم يُخصم شيء من قسيمتك.");
    assert!(refused.notices[0].text.starts_with("The voucher payment of 5.000 JOD was refused."));
    assert_eq!(
        world.sms(SHOP, &format!("REDEEM {code} 31")).reply,
        "Only 30.000 JOD left on this voucher."
    );
    // A beneficiary cannot redeem; a shop cannot ask for a balance.
    assert_eq!(
        world.sms(AMAL, &format!("قسيمة {code} 5")).reply,
        "لم نفهم رسالتك. أرسل مساعدة لقائمة الأوامر."
    );
    assert_eq!(
        world.sms(SHOP, "BAL 4821").reply,
        "Sorry, we did not understand. Send HELP for the list of commands."
    );
}

#[test]
fn strangers_forgeries_floods_and_guessed_pins_change_nothing() {
    let mut world = World::new();
    let size = world.agency.ledger().size();
    let stranger = world.sms("+962790000000", "PAY 0771234567 5 1234");
    assert_eq!(stranger.reply, "This number is not registered. Please contact your aid agency.");
    let (form, signature) = world.webhook(AMAL, "PAY 0771234567 5 4821");
    let forged = form.replace("4821", "4822");
    assert_eq!(
        twilio::parse(TOKEN, URL, Some(&signature), forged.as_bytes()),
        Err(GatewayError::Unauthenticated)
    );
    assert_eq!(
        twilio::parse(TOKEN, URL, None, form.as_bytes()),
        Err(GatewayError::Unauthenticated)
    );
    assert_eq!(world.agency.ledger().size(), size);

    // Five wrong PINs lock the phone's PIN, even the right one, for half an hour.
    for left in [4, 3, 2, 1] {
        let reply = world.sms(OMAR, "SOLDE 1111").reply;
        assert!(reply.contains(&format!("Encore {left} essai")), "{reply}");
    }
    assert_eq!(
        world.sms(OMAR, "SOLDE 1111").reply,
        "Trop de PIN incorrects. Reessayez dans 30 minutes."
    );
    assert!(world.sms(OMAR, "SOLDE 4821").reply.starts_with("Trop de PIN incorrects."));
    // The lock is in the registry's store: a restart does not lift it.
    world.restart_channel();
    world.clock.fetch_add(20 * 60_000, Ordering::SeqCst);
    assert_eq!(
        world.sms(OMAR, "SOLDE 4821").reply,
        "Trop de PIN incorrects. Reessayez dans 10 minutes."
    );
    world.clock.fetch_add(10 * 60_000, Ordering::SeqCst);
    assert_eq!(world.sms(OMAR, "SOLDE 4821").reply, "Votre solde : 0.000 JOD");

    // More than 12 messages a minute from one phone: asked to wait.
    world.clock.fetch_add(60_000, Ordering::SeqCst);
    for _ in 0..12 {
        assert_eq!(world.sms(OMAR, "AIDE").notices.len(), 0);
    }
    assert_eq!(
        world.sms(OMAR, "AIDE").reply,
        "Trop de messages. Attendez une minute et reessayez."
    );
    world.restart_channel();
    assert_eq!(
        world.sms(OMAR, "AIDE").reply,
        "Trop de messages. Attendez une minute et reessayez.",
        "a restart does not reset the message limit"
    );
    assert_eq!(world.agency.ledger().size(), size, "nothing was applied");
    let _ = &world.amal;
}

/// A USSD step as Africa's Talking posts it.
fn ussd(world: &World, session: &str, phone: &str, text: &str) -> sanad_sms::UssdAnswer {
    ussd_on(world.channel.as_ref().unwrap(), session, phone, text)
}

/// A USSD step, on `channel`.
fn ussd_on(channel: &Channel, session: &str, phone: &str, text: &str) -> sanad_sms::UssdAnswer {
    let url = "https://sanad.example.org/v1/ussd/africastalking?secret=at-secret";
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("sessionId", session)
        .append_pair("serviceCode", "*384*1234#")
        .append_pair("phoneNumber", phone)
        .append_pair("networkCode", "41601")
        .append_pair("text", text)
        .finish();
    let step =
        sanad_sms::gateway::africastalking::parse_ussd(b"at-secret", url, body.as_bytes()).unwrap();
    channel.ussd(&step).unwrap()
}

/// A flood of USSD sessions cannot grow the channel without bound: past its limit a new
/// session is told the service is busy and nothing is kept of it, while the sessions under way
/// carry on; once the old ones lapse, new ones open again.
#[test]
fn ussd_sessions_beyond_the_limit_are_told_the_service_is_busy() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let ticking = Arc::clone(&world.clock);
    let options = ChannelOptions {
        clock: Arc::new(move || ticking.load(Ordering::SeqCst)),
        ussd_sessions_max: 3,
        ..ChannelOptions::default()
    };
    let replies = Replies::embedded().unwrap();
    let channel = Channel::open(Arc::clone(&world.agency), dir.path(), replies, options).unwrap();
    for session in ["s1", "s2", "s3"] {
        assert!(!ussd_on(&channel, session, AMAL, "").end, "{session} opens");
    }
    let busy = ussd_on(&channel, "s4", AMAL, "");
    assert!(busy.end);
    assert_eq!(busy.screen, "The service is busy. Please try again in a few minutes.");
    assert!(!ussd_on(&channel, "s1", AMAL, "1").end, "a session under way carries on");
    world.clock.fetch_add(2 * sanad_sms::ussd::SESSION_MS + 1, Ordering::SeqCst);
    assert!(!ussd_on(&channel, "s5", AMAL, "").end, "the lapsed ones made room");
}

#[test]
fn ussd_menus_apply_nothing_before_the_final_confirmation() {
    let mut world = World::new();
    let first = ussd(&world, "s1", AMAL, "");
    assert!(!first.end && first.screen.starts_with("1 الرصيد"), "{}", first.screen);
    let invalid = ussd(&world, "s1", AMAL, "9");
    assert!(invalid.screen.starts_with("اختيار غير صالح.\n1 الرصيد"), "{}", invalid.screen);
    assert_eq!(ussd(&world, "s1", AMAL, "9*1").screen, "أدخل رمزك السري:");
    let balance = ussd(&world, "s1", AMAL, "9*1*4821");
    assert!(balance.end);
    assert_eq!(balance.screen, "رصيدك: 50.000 JOD");

    // Paying a shop: nothing moves until the last step says yes; a retried step is answered.
    let size = world.agency.ledger().size();
    for (text, expected) in [
        ("2", "أدخل رقم الهاتف:"),
        ("2*0771234567", "أدخل المبلغ:"),
        ("2*0771234567*12.5", "أدخل رمزك السري:"),
        ("2*0771234567*12.5*4821", "دفع 12.5 إلى 0771234567؟ 1 نعم 2 لا"),
    ] {
        let answer = ussd(&world, "s2", AMAL, text);
        assert_eq!((answer.screen.as_str(), answer.end), (expected, false));
    }
    assert_eq!(world.agency.ledger().size(), size, "nothing before the confirmation");
    let paid = ussd(&world, "s2", AMAL, "2*0771234567*12.5*4821*1");
    assert!(paid.end && paid.screen.starts_with("دفعت 12.500 JOD"), "{}", paid.screen);
    assert_eq!(paid.notices[0].to, SHOP);
    let again = ussd(&world, "s2", AMAL, "2*0771234567*12.5*4821*1");
    assert_eq!((again.screen.as_str(), again.end), (paid.screen.as_str(), true));
    assert_eq!(world.balance(&world.shop), jod("12.5"), "paid once");
    let cancelled = ussd(&world, "s3", AMAL, "3*0791234568*5*4821*2");
    assert!(cancelled.end && cancelled.screen == "أُلغي. لم يتم شيء.");
    assert_eq!(world.balance(&world.wallet(&world.omar)), jod("0"));

    // A voucher payment confirmed through USSD.
    let code = world.voucher_code.clone();
    let asked = world.sms(SHOP, &format!("REDEEM {code} 4"));
    let digits: String =
        asked.notices[0].text.chars().filter(char::is_ascii_digit).skip(4).take(6).collect();
    assert_eq!(
        ussd(&world, "s4", AMAL, &format!("4*{digits}")).screen,
        "تأكيد الدفع بالقسيمة؟ 1 نعم 2 لا"
    );
    let done = ussd(&world, "s4", AMAL, &format!("4*{digits}*1"));
    assert!(done.end && done.screen.starts_with("دفعت 4.000 JOD من قسيمتك"), "{}", done.screen);

    // A stale session ends with nothing done; strangers are turned away.
    ussd(&world, "s5", AMAL, "");
    world.clock.fetch_add(sanad_sms::ussd::SESSION_MS + 1, Ordering::SeqCst);
    let stale = ussd(&world, "s5", AMAL, "1*4821");
    assert!(stale.end && stale.screen == "أُلغي. لم يتم شيء.", "{stale:?}");
    let stranger = ussd(&world, "s6", "+962790000000", "");
    assert!(stranger.end && stranger.screen.starts_with("This number is not registered"));
}

/// Someone who controls the beneficiary's sender number (a spoofed SMS, a stolen SIM) but not
/// the phone's messages cannot redeem: a shop's request pays only on the six digits sent to
/// the real phone or the PIN, three wrong answers lock the voucher, and then even the right
/// digits pay nothing.
#[test]
fn a_spoofed_sender_without_the_digits_cannot_redeem() {
    let mut world = World::new();
    let code = world.voucher_code.clone();
    let asked = world.sms(SHOP, &format!("REDEEM {code} 10"));
    assert!(asked.reply.starts_with("Voucher: 10.000 JOD requested."), "{}", asked.reply);
    let digits: String =
        asked.notices[0].text.chars().filter(char::is_ascii_digit).skip(5).take(6).collect();
    let wrong = if digits == "123456" { "654321" } else { "123456" };
    assert_eq!(world.sms(AMAL, &format!("YES {wrong}")).reply, "Wrong PIN. 2 attempts left.");
    assert_eq!(world.sms(AMAL, &format!("YES {wrong}")).reply, "Wrong PIN. 1 attempt left.");
    let locked = world.sms(AMAL, &format!("YES {wrong}")).reply;
    assert_eq!(locked, "This voucher is locked after wrong PINs. Please try again later.");
    let late = world.sms(AMAL, &format!("YES {digits}")).reply;
    assert!(!late.contains("10.000 JOD from your voucher"), "paid after the lock: {late}");
    assert_eq!(world.balance(&world.shop), jod("0"), "the shop was paid nothing");
    // Nor can the shop ask again while the voucher is locked.
    let again = world.sms(SHOP, &format!("REDEEM {code} 10")).reply;
    assert!(!again.starts_with("Voucher: 10.000 JOD requested."), "a locked voucher: {again}");
}
