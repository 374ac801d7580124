//! USSD menus: balance, pay a shop, send money, confirm a voucher payment, change PIN.
//!
//! Africa's Talking sends every input of the session so far with each step, so the menu is a
//! state machine folded over those inputs: no session state to keep or lose. An input that does
//! not fit its step is ignored and the step asked again ("Invalid choice."). Nothing is applied
//! until the final step — the PIN for a balance, `1` on the confirmation screen for a payment —
//! and that step runs the same command as the SMS would, once per session (a retried step gets
//! the stored screen). Sessions older than [`SESSION_MS`] end without doing anything. Each new
//! session counts as one message against the phone's limit.
//!
//! ```text
//! (dial)      CON 1 Balance / 2 Pay a shop / 3 Send money / 4 Confirm a voucher payment / 5 Change PIN
//! 1           CON Enter your PIN:            → 1*PIN             END Your balance: …
//! 2 or 3      CON Enter the phone number:    → 2*PHONE           CON Enter the amount:
//!             → 2*PHONE*AMOUNT  CON Enter your PIN:  → …*PIN      CON Pay 12.500 JOD to +…? 1 Yes 2 No
//!             → …*1             END Paid …                        → …*2   END Cancelled.
//! 4           CON Enter the 6 digits:        → 4*DIGITS          CON Confirm the voucher payment? 1 Yes 2 No
//!             → …*1   END You paid … from your voucher            → …*2   END Refused.
//! 5           CON Enter your PIN:  → 5*OLD   CON Enter the new PIN:   → 5*OLD*NEW   END Your PIN was changed.
//! ```

use crate::Error;
use crate::channel::{Channel, Notice, Sender, say};
use crate::gateway::africastalking::UssdStep;
use crate::input::{Secret, SmsCommand, amount, is_phone, normalise, pin};
use crate::replies::Arg;

/// How long a session may last, in ms (networks end theirs after about three minutes).
pub const SESSION_MS: u64 = 180_000;

/// What to answer a USSD step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UssdAnswer {
    /// The screen.
    pub screen: String,
    /// Whether the session ends (`END`) or goes on (`CON`).
    pub end: bool,
    /// Messages for other phones, to send by SMS.
    pub notices: Vec<Notice>,
}

/// Where the menu stands after the inputs so far.
#[derive(Clone, Debug)]
enum Step {
    Root,
    AskPin(Goal),
    AskPhone(bool),
    AskAmount(bool, String),
    AskPayPin(bool, String, String),
    ConfirmPay(bool, String, String, Secret),
    AskDigits,
    ConfirmVoucher(Secret),
    AskNewPin(Secret),
    Final(SmsCommand),
    Cancelled,
}

/// What the PIN is asked for.
#[derive(Clone, Copy, Debug)]
enum Goal {
    Balance,
    ChangePin,
}

/// Folds the inputs; returns the step and whether the last input was refused.
fn walk(inputs: &[String]) -> (Step, bool) {
    let mut step = Step::Root;
    let mut refused = false;
    for raw in inputs {
        let input = normalise(raw);
        let next = match (&step, input.as_str()) {
            (Step::Root, "1") => Some(Step::AskPin(Goal::Balance)),
            (Step::Root, "2") => Some(Step::AskPhone(false)),
            (Step::Root, "3") => Some(Step::AskPhone(true)),
            (Step::Root, "4") => Some(Step::AskDigits),
            (Step::Root, "5") => Some(Step::AskPin(Goal::ChangePin)),
            (Step::AskPin(Goal::Balance), typed) => {
                pin(typed).map(|pin| Step::Final(SmsCommand::Balance { pin }))
            }
            (Step::AskPin(Goal::ChangePin), typed) => pin(typed).map(Step::AskNewPin),
            (Step::AskNewPin(old), typed) => {
                pin(typed).map(|new| Step::Final(SmsCommand::ChangePin { old: old.clone(), new }))
            }
            (Step::AskPhone(person), typed) => {
                is_phone(typed).then(|| Step::AskAmount(*person, typed.to_owned()))
            }
            (Step::AskAmount(person, phone), typed) => {
                amount(typed).map(|amount| Step::AskPayPin(*person, phone.clone(), amount))
            }
            (Step::AskPayPin(person, phone, sum), typed) => {
                pin(typed).map(|pin| Step::ConfirmPay(*person, phone.clone(), sum.clone(), pin))
            }
            (Step::ConfirmPay(person, phone, sum, pin), "1") => {
                let (to, amount, pin) = (phone.clone(), sum.clone(), pin.clone());
                Some(Step::Final(if *person {
                    SmsCommand::Send { to, amount, pin }
                } else {
                    SmsCommand::Pay { to, amount, pin }
                }))
            }
            (Step::ConfirmPay(..), "2") => Some(Step::Cancelled),
            (Step::AskDigits, typed) => {
                let ok = typed.len() == 6 && typed.bytes().all(|b| b.is_ascii_digit());
                ok.then(|| Step::ConfirmVoucher(Secret::new(typed)))
            }
            (Step::ConfirmVoucher(digits), "1" | "2") => Some(Step::Final(SmsCommand::Confirm {
                accept: input == "1",
                digits: digits.clone(),
            })),
            // Done: later inputs change nothing.
            (Step::Final(_) | Step::Cancelled, _) => None,
            _ => None,
        };
        match next {
            Some(next) => {
                step = next;
                refused = false;
            }
            None => refused = !matches!(step, Step::Final(_) | Step::Cancelled),
        }
    }
    (step, refused)
}

impl Channel {
    /// Answers one USSD step (see the module's menu).
    ///
    /// # Errors
    /// Storage failures; everything the caller did wrong is a screen.
    pub fn ussd(&self, step: &UssdStep) -> Result<UssdAnswer, Error> {
        let now_ms = self.now_ms();
        let started = {
            let mut sessions = crate::channel::lock(&self.sessions);
            let known = sessions.get(&step.session_id).copied();
            match known {
                Some(started) => started,
                None => {
                    if sessions.len() >= self.ussd_sessions_max() {
                        // Forget sessions abandoned long ago, only when full: a scan per new
                        // session would cost in proportion to the sessions open.
                        sessions.retain(|_, at| now_ms.saturating_sub(*at) <= 2 * SESSION_MS);
                    }
                    if sessions.len() >= self.ussd_sessions_max() {
                        drop(sessions);
                        let language = self.language_of(None, None);
                        let busy = self.render(&language, &say("busy"));
                        return Ok(UssdAnswer { screen: busy, end: true, notices: Vec::new() });
                    }
                    sessions.insert(step.session_id.clone(), now_ms);
                    now_ms
                }
            }
        };
        let key = crate::channel::message_key(
            "ussd",
            &format!("{}:{}", step.session_id, step.inputs.len()),
        );
        let mut end = false;
        let outcome = self.once(&key, || {
            let (screen, done, notices) = self.ussd_screen(step, started, now_ms)?;
            end = done;
            // The stored answer keeps the session's fate in its first character.
            Ok((format!("{}{screen}", if done { 'E' } else { 'C' }), notices))
        })?;
        let (mark, screen) =
            outcome.reply.split_at(outcome.reply.chars().next().map_or(0, char::len_utf8));
        if outcome.replayed {
            end = mark == "E";
        }
        if end {
            crate::channel::lock(&self.sessions).remove(&step.session_id);
        }
        Ok(UssdAnswer { screen: screen.to_owned(), end, notices: outcome.notices })
    }

    fn ussd_screen(
        &self,
        step: &UssdStep,
        started: u64,
        now_ms: u64,
    ) -> Result<(String, bool, Vec<Notice>), Error> {
        let registry = self.agency().registry();
        let default = self.language_of(None, None);
        let Ok(phone) = registry.normalise_phone(&step.phone) else {
            return Ok((self.render(&default, &say("unknown-sender")), true, Vec::new()));
        };
        // Sessions count against the phone's message limit, not each step of one.
        if step.inputs.is_empty() && !self.within_rate(&phone, now_ms)? {
            return Ok((self.render(&default, &say("rate-limited")), true, Vec::new()));
        }
        let beneficiary = registry.find_by_phone(&phone).map_err(Error::Engine)?;
        let language = self.language_of(None, beneficiary.as_ref());
        let Some(person) = beneficiary else {
            return Ok((self.render(&language, &say("unknown-sender")), true, Vec::new()));
        };
        if now_ms.saturating_sub(started) > SESSION_MS {
            return Ok((self.render(&language, &say("ussd-cancelled")), true, Vec::new()));
        }
        let (at, refused) = walk(&step.inputs);
        let ask = |id: &'static str| self.render(&language, &say(id));
        let prompt = match &at {
            Step::Root => ask("ussd-menu"),
            Step::AskPin(_) | Step::AskPayPin(..) => ask("ussd-ask-pin"),
            Step::AskPhone(_) => ask("ussd-ask-phone"),
            Step::AskAmount(..) => ask("ussd-ask-amount"),
            Step::AskDigits => ask("ussd-ask-digits"),
            Step::AskNewPin(_) => ask("ussd-ask-new-pin"),
            Step::ConfirmVoucher(_) => ask("ussd-confirm-voucher"),
            Step::ConfirmPay(_, to, sum, _) => {
                let args = vec![("amount", Arg::Text(sum.clone())), ("to", Arg::Text(to.clone()))];
                self.replies().render(&language, "ussd-confirm-pay", &args)
            }
            Step::Cancelled => return Ok((ask("ussd-cancelled"), true, Vec::new())),
            Step::Final(command) => {
                let sender = Sender {
                    phone,
                    beneficiary: Some(person),
                    vendor: None,
                    language: language.clone(),
                };
                let mut notices = Vec::new();
                let operation = crate::channel::message_key("ussd", &step.session_id);
                let said = self.run(&sender, command.clone(), &operation, &mut notices)?;
                return Ok((self.render(&language, &said), true, notices));
            }
        };
        let screen = if refused { format!("{}\n{prompt}", ask("ussd-invalid")) } else { prompt };
        Ok((screen, false, Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_menu_walks_and_ignores_what_does_not_fit() {
        assert!(matches!(walk(&[]), (Step::Root, false)));
        assert!(matches!(walk(&inputs(&["9"])), (Step::Root, true)));
        assert!(matches!(walk(&inputs(&["9", "1"])), (Step::AskPin(Goal::Balance), false)));
        assert!(matches!(walk(&inputs(&["1", "12"])), (Step::AskPin(Goal::Balance), true)));
        assert!(matches!(
            walk(&inputs(&["1", "4821"])),
            (Step::Final(SmsCommand::Balance { .. }), false)
        ));
        let pay = inputs(&["2", "0771234567", "12,5", "4821"]);
        assert!(matches!(walk(&pay), (Step::ConfirmPay(false, _, _, _), false)));
        let mut confirmed = pay.clone();
        confirmed.push("1".into());
        let (Step::Final(SmsCommand::Pay { to, amount, .. }), false) = walk(&confirmed) else {
            panic!()
        };
        assert_eq!((to.as_str(), amount.as_str()), ("0771234567", "12.5"));
        let mut cancelled = pay;
        cancelled.push("2".into());
        assert!(matches!(walk(&cancelled), (Step::Cancelled, false)));
        // Arabic-Indic digits are digits.
        assert!(matches!(
            walk(&inputs(&["٣", "٠٧٩١٢٣٤٥٦٨", "٥", "٤٨٢١"])),
            (Step::ConfirmPay(true, _, _, _), false)
        ));
        assert!(matches!(
            walk(&inputs(&["4", "123456", "1"])),
            (Step::Final(SmsCommand::Confirm { accept: true, .. }), false)
        ));
        assert!(matches!(
            walk(&inputs(&["5", "4821", "9999"])),
            (Step::Final(SmsCommand::ChangePin { .. }), false)
        ));
    }
}
