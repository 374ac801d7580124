# Réponses SMS et USSD de Sanad, français.
# Valeurs : $amount, $balance, $available sont des montants avec leur devise (« 12.500 JOD ») ;
# $to et $from des numéros ; $ref une courte référence ; $digits six chiffres.
# Chaque réponse tient dans un SMS : 160 caractères en GSM-7, donc sans ç ê â î ô û « ».
# (Écrire « recu », « reessayer », « a » sans accent circonflexe ni cédille.)

help = Envoyez : SOLDE PIN, HIST PIN, PAYER tel montant PIN, ENVOYER tel montant PIN, PIN ancien nouveau. Boutiques : BON code montant.
unknown-sender = Ce numero n'est pas inscrit. Contactez votre agence d'aide.
unknown-command = Message non compris. Envoyez AIDE pour la liste des commandes.
bad-amount = Verifiez le montant : en chiffres, par exemple 12,5
bad-pin = Un PIN a 4 a 8 chiffres.
balance = Votre solde : { $balance }
history = Derniers : { $lines }
history-empty = Aucun mouvement pour l'instant.
paid = Paye { $amount } a { $to }. Solde : { $balance }. Ref { $ref }
sent = Envoye { $amount } a { $to }. Solde : { $balance }. Ref { $ref }
received = Vous avez recu { $amount } de { $from }. Solde : { $balance }
insufficient = Solde insuffisant : { $balance }.
wrong-pin = PIN incorrect. { $left ->
    [one] Encore 1 essai.
   *[other] Encore { $left } essais.
}
locked = Trop de PIN incorrects. Reessayez dans { $minutes } minutes.
pin-changed = Votre PIN a ete change.
recipient-unknown = { $to } n'est pas inscrit.
not-a-vendor = { $to } n'est pas une boutique inscrite.
redeem-waiting = Bon : { $amount } demande. En attente de la confirmation du beneficiaire. Ref { $ref }
redeem-confirm = Une boutique demande { $amount } sur votre bon. Repondez OUI { $digits } pour accepter ou NON { $digits } pour refuser.
redeem-done = Paiement par bon de { $amount } confirme. Ref { $ref }
redeem-done-beneficiary = Vous avez paye { $amount } avec votre bon. Reste : { $available }
redeem-refused = Le paiement par bon de { $amount } a ete refuse. Ref { $ref }
redeem-refused-beneficiary = Refuse. Rien n'a ete pris sur votre bon.
code-typo = Le code du bon a une faute de frappe. Verifiez-le et renvoyez-le.
code-unknown = Aucun bon n'a ce code.
too-many-guesses = Trop de codes faux. Reessayez dans { $minutes } minutes.
voucher-expired = Ce bon a expire.
voucher-used = Ce bon est epuise.
voucher-revoked = Ce bon a ete annule.
voucher-locked = Ce bon est bloque apres des PIN incorrects. Reessayez plus tard.
voucher-busy = Un autre paiement par ce bon attend une confirmation.
voucher-not-here = Ce bon n'est pas accepte dans cette boutique.
voucher-exceeded = Il ne reste que { $available } sur ce bon.
voucher-whole = Ce bon doit etre utilise pour tout le reste : { $available }
voucher-item = Ce bon ne permet pas cet article ou cette quantite.
no-pending = Aucun paiement n'attend votre reponse.
rate-limited = Trop de messages. Attendez une minute et reessayez.
busy = Service occupe. Reessayez dans quelques minutes.
refused = Desole, c'est refuse ({ $code }).
failed = Desole, une erreur est survenue. Reessayez plus tard.
ussd-menu = 1 Solde
    2 Payer une boutique
    3 Envoyer de l'argent
    4 Confirmer un paiement par bon
    5 Changer le PIN
ussd-ask-pin = Entrez votre PIN :
ussd-ask-phone = Entrez le numero :
ussd-ask-amount = Entrez le montant :
ussd-ask-digits = Entrez les 6 chiffres de la confirmation :
ussd-ask-new-pin = Entrez le nouveau PIN :
ussd-confirm-pay = Payer { $amount } a { $to } ? 1 Oui 2 Non
ussd-confirm-voucher = Confirmer le paiement par bon ? 1 Oui 2 Non
ussd-cancelled = Annule. Rien n'a ete fait.
ussd-invalid = Choix invalide.
