import os

from django.core.wsgi import get_wsgi_application

from billing_portal import warm

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")

application = get_wsgi_application()
warm.serve()
