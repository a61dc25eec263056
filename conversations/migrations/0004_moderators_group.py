"""The "Moderators" group, with exactly the permissions the moderation admin checks.

view: conversation, participant, message, attachment, report, moderationaction (read the rooms,
the queue and the audit log); change: message (hide, unhide, approve, reject), participant
(mute, kick, ban), conversation (end, settings), report (resolve, dismiss). No add or delete:
everything is created by Chat, and the audit log is never edited. See docs/moderation.md.
"""

from django.db import migrations

GROUP = "Moderators"
PERMISSIONS = {
    "view": ["conversation", "participant", "message", "attachment", "report", "moderationaction"],
    "change": ["conversation", "participant", "message", "report"],
}


def codenames() -> list[str]:
    return [f"{verb}_{model}" for verb, models in PERMISSIONS.items() for model in models]


def create_group(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after the last migration; make sure they exist now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    wanted = codenames()
    perms = list(Permission.objects.filter(content_type__app_label="conversations", codename__in=wanted))
    missing = set(wanted) - {p.codename for p in perms}
    if missing:
        raise RuntimeError(f"permissions missing: {sorted(missing)}")
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.set(perms)


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("conversations", "0003_moderation"),
    ]
    operations = [migrations.RunPython(create_group, remove_group)]
