import numpy as np
import torch

from inference.cards import InputSpec, WindowSpec
from inference.ich.preprocess import prepare, slab_size, to_input_plane

SPEC = InputSpec(matrix=(64, 64), slice_spacing_mm=5.0, context_slices=1,
                 windows=(WindowSpec(name="brain", center=40, width=80),
                          WindowSpec(name="bone", center=600, width=2800)), channels=6)


def test_slab_size():
    assert slab_size(5.0, 5.0) == 1
    assert slab_size(4.0, 5.0) == 1
    assert slab_size(1.0, 5.0) == 5
    assert slab_size(0.625, 5.0) == 8
    assert slab_size(1.0, None) == 1


def test_thin_slices_become_slabs_and_map_back():
    arr = np.zeros((12, 64, 64), dtype=np.float32)
    arr[:5] = 40.0   # slab 0 -> brain window 0.5
    arr[5:10] = 80.0  # slab 1 -> 1.0
    prep = prepare(arr, (1.0, 1.0, 1.0), SPEC)
    assert prep.inputs.shape == (3, 6, 64, 64)
    assert list(prep.slab_of_slice) == [0] * 5 + [1] * 5 + [2] * 2
    assert list(prep.slab_center) == [2, 7, 11]
    centre_brain = prep.inputs[:, 2]  # channels: (prev brain, prev bone, cur brain, ...)
    assert torch.allclose(centre_brain[0], torch.full((64, 64), 0.5))
    assert torch.allclose(centre_brain[1], torch.full((64, 64), 1.0))
    # context: slab 0's previous neighbour is itself (edge), its next is slab 1
    assert torch.allclose(prep.inputs[0, 0], prep.inputs[0, 2])
    assert torch.allclose(prep.inputs[0, 4], prep.inputs[1, 2])


def test_non_square_is_padded_with_air_and_maps_back():
    arr = np.full((2, 100, 50), 40.0, dtype=np.float32)
    prep = prepare(arr, (5.0, 1.0, 1.0), SPEC)
    top, left, h, w = prep.content
    assert (h, w) == (64, 32) and left == 16
    brain = prep.inputs[0, 2]
    assert float(brain[:, :16].max()) == 0.0 and float(brain[:, 16:48].min()) == 0.5
    heat = torch.zeros(64, 64)
    heat[32, 40] = 1.0
    back = to_input_plane(heat, prep)
    assert back.shape == (100, 50)
    y, x = np.unravel_index(np.argmax(back), back.shape)
    assert abs(y - 50) <= 2 and abs(x - 37) <= 2
