# The audit log moved here from the domains app. Its table stays where it is (domains_auditentry, created by
# domains 0001): this migration only tells Django the model is ours now, and carries its content type over
# so that permissions given on it and the admin site's history keep pointing at it.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def move_content_type(apps, schema_editor, src='domains', dst='audit'):
    ContentType = apps.get_model('contenttypes', 'ContentType')
    db = schema_editor.connection.alias
    if not ContentType.objects.using(db).filter(app_label=dst, model='auditentry').exists():
        ContentType.objects.using(db).filter(app_label=src, model='auditentry').update(app_label=dst)


def move_content_type_back(apps, schema_editor):
    move_content_type(apps, schema_editor, src='audit', dst='domains')


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('domains', '0004_storage_ownership'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='AuditEntry',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('created_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('actor_name', models.CharField(max_length=150)),
                        ('action', models.CharField(max_length=64)),
                        ('host_name', models.CharField(blank=True, max_length=63)),
                        ('domain_uuid', models.UUIDField(blank=True, null=True)),
                        ('domain_name', models.CharField(blank=True, max_length=255)),
                        ('client_addr', models.GenericIPAddressField(blank=True, null=True)),
                        ('result', models.CharField(choices=[('pending', 'Pending'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('denied', 'Denied')], default='pending', max_length=16)),
                        ('message', models.TextField(blank=True)),
                        ('actor', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='audit_entries', to=settings.AUTH_USER_MODEL)),
                        ('host', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to='domains.host')),
                    ],
                    options={
                        'verbose_name_plural': 'audit entries',
                        'db_table': 'domains_auditentry',
                        'ordering': ['-created_at', '-id'],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_type, move_content_type_back),
    ]
