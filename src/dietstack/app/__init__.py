"""One command's view of the cloud (cloud.py opens it once) and the work each verb
does with it: deploy and destroy, node add and remove, backup and restore, looking."""
