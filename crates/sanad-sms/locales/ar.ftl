# ردود سند عبر الرسائل القصيرة و USSD، بالعربية.
# القيم: $amount و $balance و $available مبالغ مع العملة ("12.500 JOD")؛
# $to و $from أرقام هواتف؛ $ref مرجع قصير؛ $digits ستة أرقام.
# الرسالة العربية تُرسل بترميز UCS-2: 70 حرفاً للرسالة الواحدة. اختصر.

help = أرسل: رصيد PIN، سجل PIN، ادفع هاتف مبلغ PIN، ارسل هاتف مبلغ PIN
unknown-sender = هذا الرقم غير مسجل. راجع وكالة المساعدة.
unknown-command = لم نفهم رسالتك. أرسل مساعدة لقائمة الأوامر.
bad-amount = تحقق من المبلغ: بالأرقام، مثل 12.5
bad-pin = الرمز السري من 4 إلى 8 أرقام.
balance = رصيدك: { $balance }
history = آخر الحركات { $lines }
history-empty = لا توجد حركات بعد.
paid = دفعت { $amount } إلى { $to }. الرصيد { $balance }. مرجع { $ref }
sent = أرسلت { $amount } إلى { $to }. الرصيد { $balance }. مرجع { $ref }
received = وصلك { $amount } من { $from }. الرصيد { $balance }
insufficient = الرصيد غير كاف: { $balance }
wrong-pin = رمز خاطئ. { $left ->
    [zero] لا محاولات متبقية.
    [one] بقيت محاولة واحدة.
    [two] بقيت محاولتان.
    [few] بقيت { $left } محاولات.
   *[other] بقيت { $left } محاولة.
}
locked = رموز خاطئة كثيرة. حاول بعد { $minutes } دقيقة.
pin-changed = تم تغيير رمزك السري.
recipient-unknown = { $to } غير مسجل.
not-a-vendor = { $to } ليس متجراً مسجلاً.
redeem-waiting = قسيمة: طلب { $amount }. بانتظار تأكيد المستفيد. مرجع { $ref }
redeem-confirm = متجر طلب { $amount } من قسيمتك. للقبول نعم { $digits } وللرفض لا { $digits }
redeem-done = تم تأكيد الدفع بالقسيمة { $amount }. مرجع { $ref }
redeem-done-beneficiary = دفعت { $amount } من قسيمتك. الباقي { $available }
redeem-refused = رُفض الدفع بالقسيمة { $amount }. مرجع { $ref }
redeem-refused-beneficiary = تم الرفض. لم يُخصم شيء من قسيمتك.
code-typo = في رمز القسيمة خطأ مطبعي. تحقق منه وأرسله مجدداً.
code-unknown = لا توجد قسيمة بهذا الرمز.
too-many-guesses = رموز خاطئة كثيرة. حاول بعد { $minutes } دقيقة.
voucher-expired = انتهت صلاحية هذه القسيمة.
voucher-used = استُخدمت هذه القسيمة بالكامل.
voucher-revoked = أُلغيت هذه القسيمة.
voucher-locked = القسيمة مقفلة بعد رموز خاطئة. حاول لاحقاً.
voucher-busy = دفعة أخرى من هذه القسيمة بانتظار التأكيد.
voucher-not-here = لا تقبل هذه القسيمة في هذا المتجر.
voucher-exceeded = الباقي في القسيمة { $available } فقط.
voucher-whole = تُستخدم القسيمة لكامل الباقي: { $available }
voucher-item = القسيمة لا تسمح بهذا الصنف أو الكمية.
no-pending = لا توجد دفعة بانتظار ردك.
rate-limited = رسائل كثيرة. انتظر دقيقة وحاول مجدداً.
busy = الخدمة مشغولة. حاول مجدداً بعد دقائق.
refused = عذراً، تم الرفض ({ $code }).
failed = عذراً، حدث خطأ. حاول لاحقاً.
ussd-menu = 1 الرصيد
    2 الدفع لمتجر
    3 إرسال مال
    4 تأكيد دفع بقسيمة
    5 تغيير الرمز
ussd-ask-pin = أدخل رمزك السري:
ussd-ask-phone = أدخل رقم الهاتف:
ussd-ask-amount = أدخل المبلغ:
ussd-ask-digits = أدخل أرقام التأكيد الستة:
ussd-ask-new-pin = أدخل الرمز الجديد:
ussd-confirm-pay = دفع { $amount } إلى { $to }؟ 1 نعم 2 لا
ussd-confirm-voucher = تأكيد الدفع بالقسيمة؟ 1 نعم 2 لا
ussd-cancelled = أُلغي. لم يتم شيء.
ussd-invalid = اختيار غير صالح.
