"""The VM pages and consoles speak Vietnamese to a user who chose it, and English stays the default: each page
is read in both languages, so an English text that should have been translated shows up in the Vietnamese one."""

from __future__ import annotations

from pathlib import Path

import pytest

from accounts.models import User
from domains.models import Host
from tests.conftest import TEST_DOMAIN_UUID, client_for

VM = f"/domains/embedded/{TEST_DOMAIN_UUID}/"
CONSOLE_UUID = "3c1e5bd4-7a0e-4b53-9a41-6e2f0c7d11a5"

# Each page, a few of its texts in English and what a Vietnamese reader sees instead.
PAGES = {
    "vm page": (VM, {
        "Snapshots": "Ảnh chụp nhanh",
        "Create snapshot": "Tạo ảnh chụp nhanh",
        "Guest agent": "Tác tử máy khách",
        "Change hardware": "Đổi phần cứng",
        "Managed save": "Bản lưu trạng thái",
        "remove snapshot metadata": "xóa siêu dữ liệu ảnh chụp nhanh",
        "Delete test? This cannot be undone.": "Xóa test? Không thể hoàn tác.",
        'data-line-average="average"': 'data-line-average="trung bình"',  # the usage charts' legend
    }),
    "define form": ("/domains/new/?host=embedded", {
        "New virtual machine": "Máy ảo mới",
        "Boot source": "Nguồn khởi động",
        "boot from": "khởi động từ",
        "a new empty volume": "một ổ đĩa ảo trống mới",
        "Preview XML": "Xem trước XML",
        "start with the host": "khởi động cùng máy chủ",
    }),
    "migrate form": (f"{VM}migrate/", {
        "Migrate test": "Di trú test",
        "Pick a destination to see its pre-checks.": "Chọn một đích đến để xem các kiểm tra trước.",
        "keep it defined on the destination": "giữ định nghĩa máy trên máy chủ đích",
        "bandwidth limit (MiB/s)": "giới hạn băng thông (MiB/s)",
        "copy storage": "sao chép lưu trữ",
    }),
    "hardware page": (f"{VM}hardware/", {
        "What it has": "Cấu hình hiện có",
        "Plug a network interface": "Cắm một giao diện mạng",
        "Set boot order": "Đặt thứ tự khởi động",
        "or a new volume in pool": "hoặc một ổ đĩa ảo mới trong vùng lưu trữ",
        "UEFI (the host&#x27;s OVMF, chosen by libvirt)": "UEFI (OVMF của máy chủ, do libvirt chọn)",
    }),
    "console page": (f"/consoles/screens/{CONSOLE_UUID}/", {
        "Send a key combination": "Gửi một tổ hợp phím",
        "Text to type into the machine": "Văn bản cần gõ vào máy",
        "Fullscreen": "Toàn màn hình",
        "Reconnect": "Kết nối lại",
        "resize the machine's screen": "đổi kích thước màn hình của máy",
        # What its script shows as the console connects, handed over by the template.
        'data-text-connected="Connected"': 'data-text-connected="Đã kết nối"',
        "Security failure: {reason}": "Lỗi bảo mật: {reason}",
    }),
}


@pytest.fixture
def admin_in(admin_user: User, embedded_host: Host, tmp_path: Path):
    """Signs in the admin with a language chosen; a second host to migrate to and a VM with a VNC display."""
    Host.objects.create(name="other", uri="test:///default")
    inventory = tmp_path / "screens.xml"
    inventory.write_text(
        f"<node><domain type='test'><name>screen</name><uuid>{CONSOLE_UUID}</uuid><memory>65536</memory>"
        "<vcpu>1</vcpu><os><type>hvm</type></os><devices><graphics type='vnc' port='5911' autoport='no'>"
        "<listen type='address' address='127.0.0.1'/></graphics></devices></domain></node>")
    Host.objects.create(name="screens", uri=f"test://{inventory}")

    def signed_in(language: str):
        admin_user.language = language
        admin_user.save(update_fields=["language"])
        return client_for(admin_user)

    return signed_in


@pytest.mark.parametrize("page", PAGES)
def test_each_vm_page_is_vietnamese_for_a_user_who_chose_it(admin_in, page: str):
    url, texts = PAGES[page]
    english = admin_in("").get(url).content.decode()
    vietnamese = admin_in("vi").get(url).content.decode()
    assert [text for text in texts if text not in english] == [], "English stays the default"
    assert [text for text in texts.values() if text not in vietnamese] == []
    assert [text for text in texts if text in vietnamese] == [], "left in English"


def test_a_refused_define_form_says_why_in_vietnamese_with_the_input_kept(admin_in):
    response = admin_in("vi").post("/domains/new/", {"host": "embedded", "name": "test", "boot_kind": "volume",
                                                     "vcpus": "1", "memory_mib": "128", "define": ""})
    page = response.content.decode()
    assert response.status_code == 400
    assert "Máy có tên test đã tồn tại trên máy chủ này." in page
    assert "Cần cho nguồn khởi động này." in page  # the volume an existing-volume boot needs
    assert 'value="test"' in page
