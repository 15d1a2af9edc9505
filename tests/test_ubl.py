"""Offline tests for the generated UBL invoice task (dspy_fgo/data/ubl.py); no LM."""

import json
import os
import pickle
import re
import subprocess
import sys
from collections import Counter
from xml.etree import ElementTree as ET

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
import pytest  # noqa: E402

from dspy_fgo.data import ubl  # noqa: E402
from dspy_fgo.data.ubl import (  # noqa: E402
    INSTRUCTION,
    LANGUAGES,
    LAYOUTS,
    PLACEMENTS,
    invoice,
    list_elements,
    make_agent_examples,
    make_examples,
    read_element,
    search_references,
    split_ubl,
    ubl_agent,
    ubl_id,
    ubl_metric,
    ubl_program,
)
from fakes import FakeLM, last_user  # noqa: E402

NS = {"cac": ubl._NS["cac"], "cbc": ubl._NS["cbc"]}
IDS = [ubl_id(i) for i in range(40)]


def _texts(xml: str, path: str) -> list[str]:
    return [" ".join((e.text or "").split()) for e in ET.fromstring(xml).findall(path, NS)]


# ------------------------------------------------------------------ the generator


def test_same_id_same_document_even_in_another_process():
    first = invoice("ubl-3-17")
    invoice.cache_clear()
    again = invoice("ubl-3-17")
    assert again == first and again is not first
    code = "from dspy_fgo.data.ubl import invoice; import sys; sys.stdout.write(invoice('ubl-3-17').xml)"
    env = {**os.environ, "PYTHONHASHSEED": "12345", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out == first.xml


def test_the_documents_are_the_recorded_ones():
    # Benchmarks compare cells made at different times: the data must not drift with the code.
    import hashlib

    digest = hashlib.sha256()
    for seed in (0, 1):
        for index in range(300):
            digest.update(repr(sorted(vars(invoice(ubl_id(index, seed))).items())).encode())
    assert digest.hexdigest() == "4a56830fe2ebedbc64ade636e5f3ba758c42647c8d559838c2c02d37d54a0975"


def test_ids_encode_seed_and_index():
    assert ubl_id(7) == "ubl-0-7" and ubl_id(7, seed=2) == "ubl-2-7"
    assert invoice("ubl-0-7").xml != invoice("ubl-1-7").xml != invoice("ubl-0-8").xml
    for bad in ["ubl-0", "ubl-a-1", "7", "", "ubl--1-2"]:
        with pytest.raises(ValueError, match="ubl-<seed>-<index>"):
            invoice(bad)
    with pytest.raises(ValueError):
        ubl_id(-1)


def test_documents_are_well_formed_ubl():
    for i in IDS:
        root = ET.fromstring(invoice(i).xml)
        assert root.tag == "{urn:oasis:names:specification:ubl:schema:xsd:Invoice-2}Invoice"
        assert root.find("cbc:UBLVersionID", NS).text == "2.1"
        assert root.find("cbc:ID", NS) is not None
        assert root.find("cac:AccountingSupplierParty/cac:Party/cac:PartyName/cbc:Name", NS) is not None
        assert root.findall("cac:InvoiceLine", NS)
        assert {e.tag.split("}")[0][1:] for e in root.iter()} == set(ubl._NS.values())


def test_gold_sits_exactly_in_the_claimed_placement():
    for i in IDS:
        inv = invoice(i)
        gold = inv.transport_reference
        assert inv.xml.count(gold) == 1, i
        texts = _texts(inv.xml, PLACEMENTS[inv.placement])
        holding = [t for t in texts if gold in t]
        assert len(holding) == 1, (i, inv.placement)
        if inv.placement in ("note", "line_note"):
            assert holding[0] != gold  # a label comes with it
        else:
            assert holding[0] == gold
        assert inv.placement in ubl._LAYOUT_PLACEMENTS[inv.layout]


def test_decoys_present_and_distinct_from_gold():
    for i in IDS:
        inv = invoice(i)
        assert len(inv.decoys) >= (6 if inv.layout == "minimal" else 12) and len(set(inv.decoys)) == len(inv.decoys)
        assert inv.transport_reference not in inv.decoys
        for d in inv.decoys:
            assert d in inv.xml and d not in inv.transport_reference
        root = ET.fromstring(inv.xml)
        assert root.find("cbc:ID", NS).text in inv.decoys  # the invoice number
        assert root.find("cac:OrderReference/cbc:ID", NS).text in inv.decoys
        assert root.find("cac:PaymentMeans/cac:PayeeFinancialAccount/cbc:ID", NS).text in inv.decoys  # IBAN
    # A previous shipment's consignment number is a common decoy outside the minimal layout.
    previous = sum(
        any(
            word in n
            for n in _texts(invoice(i).xml, "cbc:Note")
            for word in ("already invoiced", "bereits", "déjà", "reeds", "ya se facturó")
        )
        for i in IDS
        if invoice(i).layout != "minimal"
    )
    assert previous >= 15


def test_ibans_and_glns_carry_valid_check_digits():
    for i in IDS[:12]:
        xml = invoice(i).xml
        iban = _texts(xml, "cac:PaymentMeans/cac:PayeeFinancialAccount/cbc:ID")[0]
        assert int("".join(str(int(c, 36)) for c in iban[4:] + iban[:4])) % 97 == 1
        for gln in re.findall(r'schemeID="0088">(\d+)<', xml):
            assert len(gln) == 13
            total = sum(int(d) * (3 if k % 2 else 1) for k, d in enumerate(gln[:12]))
            assert (10 - total % 10) % 10 == int(gln[12])


def test_layouts_languages_and_placements_all_appear():
    invoices = [invoice(i) for i in IDS]
    assert {x.layout for x in invoices} == set(LAYOUTS)
    assert {x.language for x in invoices} == set(LANGUAGES)
    assert len({(x.layout, x.language) for x in invoices[:20]}) == 20  # every pair in any 20 consecutive ids
    assert {invoice(ubl_id(i)).placement for i in range(200)} == set(PLACEMENTS)
    assert len({x.transport_reference[:2] for x in invoices}) >= 5  # varied formats


def test_language_shows_in_the_text():
    words = {"de": "Rechnung", "fr": "facture", "nl": "factuur", "es": "factura", "en": "invoice"}
    for i in IDS:
        inv = invoice(i)
        if inv.layout == "minimal":  # its one note is the payment note, in the language
            assert words[inv.language] in " ".join(_texts(inv.xml, "cbc:Note")), i


def test_credit_note_layout_is_a_credit_note():
    inv = next(invoice(i) for i in IDS if invoice(i).layout == "credit_note")
    root = ET.fromstring(inv.xml)
    assert root.find("cbc:InvoiceTypeCode", NS).text == "381"
    assert root.find("cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID", NS).text in inv.decoys


def test_document_sizes():
    sizes = {layout: [] for layout in LAYOUTS}
    for i in range(80):
        inv = invoice(ubl_id(i))
        sizes[inv.layout].append(len(inv.xml))
    assert max(sizes["minimal"]) < 3_200
    assert all(max(v) < 6_500 for v in sizes.values())
    assert 4_000 < sum(sizes["full"]) / len(sizes["full"]) < 6_000


# ------------------------------------------------------------------ examples and splits


def test_examples_fields_and_inputs():
    ex = make_examples(3, seed=1)[2]
    inv = invoice("ubl-1-2")
    assert ex.invoice_id == inv.id and ex.document == inv.xml and ex.answer == inv.transport_reference
    assert (ex.layout, ex.language, ex.placement) == (inv.layout, inv.language, inv.placement)
    assert set(ex.inputs().keys()) == {"document"}
    agent_ex = make_agent_examples(3, seed=1)[2]
    assert set(agent_ex.inputs().keys()) == {"invoice_id"} and "document" not in agent_ex
    assert agent_ex.answer == ex.answer
    assert pickle.loads(pickle.dumps(ex)).answer == ex.answer


def test_split_is_fixed_disjoint_and_balanced():
    train, val, test = split_ubl(8, 8, 20)
    ids = [[e.invoice_id for e in s] for s in (train, val, test)]
    assert [len(s) for s in ids] == [8, 8, 20]
    assert len(set().union(*map(set, ids))) == 36
    assert Counter(e.layout for e in train) == {layout: 2 for layout in LAYOUTS}
    assert Counter(e.layout for e in test) == {layout: 5 for layout in LAYOUTS}
    assert {e.language for e in test} == set(LANGUAGES)
    _, _, test2 = split_ubl(40, 0, 20)
    assert [e.invoice_id for e in test2] == ids[2]  # the test set does not move with the other sizes
    assert [e.invoice_id for e in split_ubl(1, 1, 1, seed=3)[2]] == ["ubl-3-200000"]
    _, _, agent_test = split_ubl(0, 0, 20, agent=True)
    assert [e.invoice_id for e in agent_test] == ids[2] and set(agent_test[0].inputs().keys()) == {"invoice_id"}
    with pytest.raises(ValueError):
        split_ubl(-1, 1, 1)


# ------------------------------------------------------------------ metric and programs


def test_metric():
    ex = dspy.Example(answer="CMR4830917").with_inputs()
    assert ubl_metric(ex, dspy.Prediction(answer="CMR4830917"))
    assert ubl_metric(ex, dspy.Prediction(answer="  cmr4830917. "))
    assert ubl_metric(ex, dspy.Prediction(answer='"CMR4830917"'))
    assert ubl_metric(ex, "(CMR4830917)")
    assert not ubl_metric(ex, dspy.Prediction(answer="CMR-Nr. CMR4830917"))
    assert not ubl_metric(ex, dspy.Prediction(answer="4830917"))
    assert not ubl_metric(ex, dspy.Prediction(answer=""))
    assert not ubl_metric(ex, dspy.Prediction())
    slash = dspy.Example(answer="16837/25/GI")
    assert ubl_metric(slash, "16837/25/gi") and not ubl_metric(slash, "16837/25")
    spaced = dspy.Example(answer="A  B")
    assert ubl_metric(spaced, "a b")


def test_program():
    program = ubl_program()
    assert isinstance(program, dspy.Predict)
    assert list(program.signature.input_fields) == ["document"]
    assert list(program.signature.output_fields) == ["answer"]
    assert program.signature.instructions == INSTRUCTION
    assert isinstance(ubl_program("cot"), dspy.ChainOfThought)
    with pytest.raises(ValueError):
        ubl_program("nope")


# ------------------------------------------------------------------ the agent's tools


def test_list_elements():
    i = next(x for x in IDS if invoice(x).placement == "shipment_id")
    top = list_elements(i)
    assert "cac:Delivery/" in top and "cbc:ID" in top and "cac:InvoiceLine/" in top
    assert invoice(i).transport_reference not in top  # no text
    assert "cac:Shipment/" in list_elements(i, "cac:Delivery")
    assert "cbc:ID" in list_elements(i, "Delivery/Shipment")
    assert "no child elements" in list_elements(i, "cbc:ID")
    assert "No element matches" in list_elements(i, "cac:Nothing")
    notes = next(x for x in IDS if invoice(x).layout == "full")
    assert re.search(r"cbc:Note \(x\d\)", list_elements(notes))


def test_read_element_finds_the_gold_at_its_placement():
    for i in IDS:
        inv = invoice(i)
        assert inv.transport_reference in read_element(i, PLACEMENTS[inv.placement]), i
    i = next(x for x in IDS if invoice(x).placement == "tracking_id")
    assert f"cac:Delivery/cbc:TrackingID: {invoice(i).transport_reference}" in read_element(i, "cac:Delivery")
    assert read_element(i, "TrackingID") == read_element(i, "cac:Delivery/cbc:TrackingID")  # suffix match
    assert read_element(f" '{i}' ", "TrackingID") == read_element(i, "TrackingID")  # a quoted id is accepted
    assert "[schemeID=0088]" in read_element(i, "cac:AccountingSupplierParty")


def test_read_element_indexes_and_truncates():
    i = next(x for x in IDS if invoice(x).layout == "full")
    notes = _texts(invoice(i).xml, "cbc:Note")
    assert read_element(i, "cbc:Note[2]") == f"cbc:Note[2]: {notes[1]}"
    assert "cbc:Note[1]" in read_element(i, "Invoice/cbc:Note")
    assert read_element(i, "Invoice").startswith("Give a path below the root")
    lines = read_element(i, "cac:InvoiceLine").splitlines()
    assert lines[0].startswith("cac:InvoiceLine[1]/cbc:ID: 1") and len("\n".join(lines)) <= ubl._MAX_CHARS + 80
    cut = ubl._truncate([f"line {k} " + "x" * 90 for k in range(40)], 500)
    assert cut.endswith("(35 more lines; read a narrower path)") and len(cut) < 600
    assert "No element matches" in read_element(i, "cac:Nope")
    assert "No element matches" in read_element(i, "not a path!")


def test_search_references_lists_gold_and_decoys_with_paths():
    for i in IDS:
        inv = invoice(i)
        found = search_references(i)
        assert inv.transport_reference in found, i
        assert sum(d in found for d in inv.decoys) >= len(inv.decoys) - 1
        assert not re.search(r": \d{4}-\d{2}-\d{2}\b", found)  # dates are left out
        assert "currencyID" not in found
    line = next(x for x in search_references(IDS[1]).splitlines() if x.startswith("cbc:ID"))
    assert line == f"cbc:ID: {ET.fromstring(invoice(IDS[1]).xml).find('cbc:ID', NS).text}"


def test_tools_report_bad_ids_instead_of_raising():
    for tool in (list_elements, search_references):
        assert tool("INV-1").startswith("Error: not a UBL invoice id")
    assert read_element("ubl-x", "cbc:ID").startswith("Error")


def test_agent_is_a_react_over_the_tools():
    agent = ubl_agent(max_iters=4)
    assert isinstance(agent, dspy.ReAct) and agent.max_iters == 4
    assert set(agent.tools) == {"list_elements", "read_element", "search_references", "finish"}
    assert list(agent.signature.input_fields) == ["invoice_id"]
    assert agent.signature.instructions == INSTRUCTION
    assert set(agent.tools["read_element"].args) == {"invoice_id", "path"}
    assert set(agent.tools["search_references"].args) == {"invoice_id"}
    for name in ("list_elements", "read_element", "search_references"):
        assert len(agent.tools[name].desc) > 60 and "  " not in agent.tools[name].desc
    for tool in (list_elements, read_element, search_references):
        assert pickle.loads(pickle.dumps(tool)) is tool  # plain module-level functions


def test_agent_runs_the_tools_with_a_fake_lm():
    i = next(x for x in IDS if invoice(x).placement == "tracking_id")

    def respond(fields, messages):
        user = last_user(messages)
        if "next_tool_name" in fields:
            if "observation_0" not in user:
                return {
                    "next_thought": "read delivery",
                    "next_tool_name": "read_element",
                    "next_tool_args": json.dumps({"invoice_id": i, "path": "cac:Delivery"}),
                }
            return {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": "{}"}
        found = re.search(r"cbc:TrackingID: (\S+)", user)
        return {"reasoning": "the tracking id", "answer": found.group(1) if found else "none"}

    with dspy.context(lm=FakeLM(respond)):
        pred = ubl_agent()(invoice_id=i)
    assert pred.trajectory["tool_name_0"] == "read_element"
    assert invoice(i).transport_reference in pred.trajectory["observation_0"]
    assert ubl_metric(make_agent_examples(40)[IDS.index(i)], pred)


# ------------------------------------------------------------------ benchmarks


def test_benchmark_tasks():
    from benchmarks.tasks import TASKS

    task = TASKS["ubl"](program="predict", n_train=1, n_val=1, n_test=2, source=None)
    assert (len(task.train), len(task.val), len(task.test)) == (4, 4, 8)  # sizes are per layout
    assert task.partition_key == "layout" and task.group_of(task.test[0]) == task.test[0].layout
    assert isinstance(task.make_program(), dspy.Predict) and task.metric is ubl_metric
    agent_task = TASKS["ubl-agent"](program="cot", n_train=2, n_val=2, n_test=5, source=None)
    assert (len(agent_task.train), len(agent_task.val), len(agent_task.test)) == (8, 8, 20)
    assert isinstance(agent_task.make_program(), dspy.ReAct)
    assert set(agent_task.train[0].inputs().keys()) == {"invoice_id"}


def test_benchmark_runner_smoke(tmp_path):
    from benchmarks import run

    out = tmp_path / "bench"
    argv = [
        "--fake",
        "--tasks",
        "ubl,ubl-agent",
        "--methods",
        "unoptimized,fgo",
        "--n-train",
        "1",
        "--n-val",
        "1",
        "--n-test",
        "1",
        "--num-threads",
        "2",
        "--out",
        str(out),
    ]
    assert run.main(argv) == 0
    cells = sorted(p.name for p in (out / "cells").iterdir())
    assert cells == [
        "ubl-agent-predict-fgo-seed0.json",
        "ubl-agent-predict-unoptimized-seed0.json",
        "ubl-predict-fgo-seed0.json",
        "ubl-predict-unoptimized-seed0.json",
    ]
    cell = json.loads((out / "cells" / "ubl-agent-predict-fgo-seed0.json").read_text())
    assert cell["n_test"] == 4 and set(cell["per_group_accuracy"]) == set(LAYOUTS)
    # The cell keeps the agent's tool descriptions beside its instructions (fgo leaves them as they were).
    assert set(cell["instructions"]) == {"react", "extract.predict", "tool:list_elements", "tool:read_element",
                                         "tool:search_references"}
