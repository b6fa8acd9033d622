import segue


def test_public_surface_is_pinned():
    assert segue.__all__ == ["Runtime", "SegueError", "Settings", "load_settings"]
    assert all(hasattr(segue, name) for name in segue.__all__)
