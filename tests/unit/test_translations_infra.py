"""The hosts, storage, networks, tokens, audit and error pages speak Vietnamese to a user who chose it."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from django.utils import translation

from accounts.models import User
from api import services as api_services
from domains.models import Host
from tests.conftest import client_for
from vmportal import errors

# Each page with Vietnamese it must say where it said English before.
PAGES = {
    "/hosts/": ["Đăng ký một máy chủ", "Kiểm tra kết nối", "URI libvirt", "Địa chỉ di trú"],
    "/hosts/embedded/": ["Dung lượng", "Phiên bản", "Bộ nhớ trống", "Liệt kê các máy ảo của embedded",
                         "máy ảo, <strong>"],
    "/hosts/embedded/pools/": ["Vùng lưu trữ <small>trên embedded</small>", "Tự khởi động cùng máy chủ",
                               "Định nghĩa một vùng lưu trữ thư mục", "tên vùng lưu trữ"],
    "/hosts/embedded/pools/default-pool/": ["Ổ đĩa mới", "Tải lên một tệp ISO hoặc ảnh đĩa", "Định dạng",
                                            "Dừng vùng lưu trữ default-pool?"],
    "/hosts/embedded/networks/": ["Định nghĩa một mạng NAT", "Tự khởi động cùng máy chủ", "đang hoạt động",
                                  "Mạng con"],
    "/accounts/tokens/": ["Tạo mã thông báo", "chỉ đọc", "không bao giờ", "Thu hồi ci?"],
    "/audit/": ["Thành công", "Thời gian", "Các mục nhật ký kiểm tra", "mọi kết quả"],
}
# English each page said before; none of it may be left for a Vietnamese reader.
ENGLISH = ["Register a host", "Test connection", "not sampled yet", "Storage pools", "Define a directory pool",
           "Upload an ISO or a disk image", "Define a NAT network", "Starts with host", "Create token",
           "Last used", "There is nothing here", "Succeeded", "List the VMs of"]


@pytest.fixture
def vietnamese_admin(admin_user: User, embedded_host: Host) -> User:
    admin_user.language = "vi"
    admin_user.save(update_fields=["language"])
    api_services.token_create(actor=admin_user, name="ci", read_only=True)  # a token row, and an audit entry
    return admin_user


@pytest.mark.parametrize("url", PAGES)
def test_the_page_is_in_vietnamese(vietnamese_admin: User, url: str):
    page = client_for(vietnamese_admin).get(url)
    body = page.content.decode()
    assert (page.status_code, page["Content-Language"]) == (200, "vi")
    assert [text for text in PAGES[url] if text not in body] == []
    assert [text for text in ENGLISH if text in body] == []


def test_a_missing_page_says_so_in_vietnamese_with_a_way_back(vietnamese_admin: User):
    page = client_for(vietnamese_admin).get("/hosts/nosuch/", headers={"referer": "http://testserver/hosts/"})
    body = page.content.decode()
    assert page.status_code == 404
    assert "Không tìm thấy" in body and "Không có gì ở đây, hoặc không có gì bạn được phép xem." in body
    assert '<a href="http://testserver/hosts/" data-action="back">Quay lại</a>' in body
    assert [text for text in ENGLISH if text in body] == []


def test_bad_input_and_what_was_done_are_told_in_vietnamese(vietnamese_admin: User):
    client = client_for(vietnamese_admin)
    refused = client.post("/hosts/embedded/networks/", {"name": "lab", "subnet": "10.9.8.7/24"})
    assert "10.9.8.7/24 là một địa chỉ, không phải mạng con: ý bạn là 10.9.8.0/24?" in refused.content.decode()
    host_refused = client.post("/hosts/", {"name": "h2", "uri": "http://x", "enabled": "on"})
    assert "Hãy dùng một URI libvirt như qemu:///system" in host_refused.content.decode()
    token = vietnamese_admin.api_tokens.get()
    revoked = client.post(f"/accounts/tokens/{token.pk}/revoke/", follow=True).content.decode()
    assert "Đã thu hồi mã thông báo ci." in revoked and "đã thu hồi lúc" in revoked


def test_a_server_error_says_so_in_vietnamese_even_when_the_layout_cannot_render(monkeypatch: pytest.MonkeyPatch):
    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("the layout broke")

    request = RequestFactory().get("/")
    with translation.override("vi"):
        page = errors.server_error(request)
        monkeypatch.setattr(errors, "render_to_string", broken)
        bare = errors.server_error(request)
    assert page.status_code == bare.status_code == 500
    assert "Bảng điều khiển không thể trả lời yêu cầu này; sự cố đã được ghi lại." in page.content.decode()
    assert bare.content.decode() == '<h1>Đã xảy ra lỗi</h1><p><a href="/">Quay lại bảng điều khiển</a></p>'
