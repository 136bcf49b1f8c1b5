"""The cloud's OpenStack APIs through openstacksdk, as DietStack's own accounts: one
login per command, never the user's OS_* variables or clouds.yaml."""
