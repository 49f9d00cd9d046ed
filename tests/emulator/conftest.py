import pytest

from airflow_provider_xcompliance.emulator import XComplianceEmulator


@pytest.fixture
def make_emulator():
    """Start emulators with the given settings; all are stopped after the test."""
    started = []

    def factory(**kwargs) -> XComplianceEmulator:
        emu = XComplianceEmulator(**kwargs).start()
        started.append(emu)
        return emu

    yield factory
    for emu in started:
        emu.stop()


@pytest.fixture
def emu(make_emulator) -> XComplianceEmulator:
    """Real-time windows (nothing expires during a test), fast processing."""
    return make_emulator(speed=1000, upload_window_seconds=600_000, processing_seconds=20)
