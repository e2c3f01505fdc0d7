from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0003_message_stream_seq_superseded"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="retryable",
            field=models.BooleanField(default=True),
        ),
    ]
