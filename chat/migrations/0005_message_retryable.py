from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0004_message_reserved_tokens"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="retryable",
            field=models.BooleanField(default=True),
        ),
    ]
