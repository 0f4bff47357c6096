"""The complexity table: our MAC counts against the paper's Table 1."""

from stra_face.cli import main as cli_main
from stra_face.models import create_model
from stra_face.models.flops import PAPER_GMACS_256x128, complexity_table, count_complexity, format_table


def test_resnet50_matches_the_paper_at_256x128_last_stride_1():
    result = count_complexity(create_model("resnet50", last_stride=1), (256, 128))
    assert abs(result.macs / 1e9 - 4.05) / 4.05 < 0.01


def test_resnet50_stra_is_within_5_percent_of_the_paper():
    result = count_complexity(create_model("resnet50_stra", last_stride=1), (256, 128))
    assert abs(result.macs / 1e9 - PAPER_GMACS_256x128["resnet50_stra"]) / 3.17 < 0.05


def test_local_attention_multiply_adds_are_counted():
    # StRA replaces the 3x3 convs of layer4; its own grouped convs and neighbourhood sum must
    # still show up, so the saving is less than those convs' full 0.906 GMACs.
    plain = count_complexity(create_model("resnet50", last_stride=1), (256, 128)).macs
    stra = count_complexity(create_model("resnet50_stra", last_stride=1), (256, 128)).macs
    assert 0.85e9 < plain - stra < 0.906e9


def test_table_lists_paper_column(capsys):
    rows = complexity_table(["resnet50", "mobilenetv2_100"], ["256x128", "48x48"], last_stride=1)
    text = format_table(rows, ["256x128", "48x48"])
    assert "resnet50" in text and "4.05" in text and "+0.1%" in text
    cli_main(["flops", "--models", "resnet50_stra", "--sizes", "112x112"])
    assert "resnet50_stra" in capsys.readouterr().out
