# Sanad SMS and USSD replies, English.
# Values: $amount, $balance, $available are amounts with their currency ("12.500 JOD");
# $to and $from are phone numbers; $ref is a short reference; $digits are six digits.
# Keep each reply within one SMS: 160 characters in GSM-7 (no ç ê â î ô û « »).

help = Send: BAL PIN, HIST PIN, PAY phone amount PIN, SEND phone amount PIN, PIN old new. Shops: REDEEM code amount.
unknown-sender = This number is not registered. Please contact your aid agency.
unknown-command = Sorry, we did not understand. Send HELP for the list of commands.
bad-amount = Please check the amount: use digits, like 12.5
bad-pin = A PIN is 4 to 8 digits.
balance = Your balance: { $balance }
history = Last: { $lines }
history-empty = No movements yet.
paid = Paid { $amount } to { $to }. Balance: { $balance }. Ref { $ref }
sent = Sent { $amount } to { $to }. Balance: { $balance }. Ref { $ref }
received = You received { $amount } from { $from }. Balance: { $balance }
insufficient = Not enough money. Your balance is { $balance }.
wrong-pin = Wrong PIN. { $left ->
    [one] 1 attempt left.
   *[other] { $left } attempts left.
}
locked = Too many wrong PINs. Please try again in { $minutes } minutes.
pin-changed = Your PIN was changed.
recipient-unknown = { $to } is not registered.
not-a-vendor = { $to } is not a registered shop.
redeem-waiting = Voucher: { $amount } requested. Waiting for the beneficiary to confirm. Ref { $ref }
redeem-confirm = A shop asks { $amount } from your voucher. Reply YES { $digits } to accept or NO { $digits } to refuse.
redeem-done = Voucher payment of { $amount } confirmed. Ref { $ref }
redeem-done-beneficiary = You paid { $amount } from your voucher. Left: { $available }
redeem-refused = The voucher payment of { $amount } was refused. Ref { $ref }
redeem-refused-beneficiary = Refused. Nothing was taken from your voucher.
code-typo = The voucher code has a typo. Please check it and send it again.
code-unknown = No voucher has this code.
too-many-guesses = Too many wrong codes. Please try again in { $minutes } minutes.
voucher-expired = This voucher has expired.
voucher-used = This voucher is used up.
voucher-revoked = This voucher was cancelled.
voucher-locked = This voucher is locked after wrong PINs. Please try again later.
voucher-busy = Another payment from this voucher is waiting for confirmation.
voucher-not-here = This voucher cannot be used in this shop.
voucher-exceeded = Only { $available } left on this voucher.
voucher-whole = This voucher must be used for all that is left: { $available }
voucher-item = This voucher does not allow that item or quantity.
no-pending = No payment is waiting for your answer.
rate-limited = Too many messages. Please wait a minute and try again.
busy = The service is busy. Please try again in a few minutes.
refused = Sorry, this was refused ({ $code }).
failed = Sorry, something went wrong. Please try again later.
ussd-menu = 1 Balance
    2 Pay a shop
    3 Send money
    4 Confirm a voucher payment
    5 Change PIN
ussd-ask-pin = Enter your PIN:
ussd-ask-phone = Enter the phone number:
ussd-ask-amount = Enter the amount:
ussd-ask-digits = Enter the 6 digits of the confirmation:
ussd-ask-new-pin = Enter the new PIN:
ussd-confirm-pay = Pay { $amount } to { $to }? 1 Yes 2 No
ussd-confirm-voucher = Confirm the voucher payment? 1 Yes 2 No
ussd-cancelled = Cancelled. Nothing was done.
ussd-invalid = Invalid choice.
