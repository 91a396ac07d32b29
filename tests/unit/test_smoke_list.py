from domains.models import Host
from tests.conftest import client_for


def test_admin_sees_the_embedded_test_vm(admin_user, embedded_host: Host):
    response = client_for(admin_user).get("/domains/", {"all": ""})
    assert response.status_code == 200
    assert b'data-name="test"' in response.content
