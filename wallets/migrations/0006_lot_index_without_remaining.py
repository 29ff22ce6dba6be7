from django.db import migrations, models

# Every real-time debit rewrites ``CreditLot.remaining``; an index on it made each of those updates
# non-HOT (new entries in all three indexes of the table per debit, and dead ones piling up until a
# vacuum). The open-lots read only needs the wallet: a wallet has a handful of lots. Added before the
# old one goes so the read never lacks an index.


class Migration(migrations.Migration):
    dependencies = [
        ("wallets", "0005_debit_path_indexes"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="creditlot",
            index=models.Index(fields=["wallet"], name="credit_lot_wallet"),
        ),
        migrations.RemoveIndex(
            model_name="creditlot",
            name="wallets_cre_wallet__0c5db6_idx",
        ),
    ]
