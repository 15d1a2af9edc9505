"""UBL 2.1 invoices with a transport reference to find: a LogisticsQA-style task, generated offline.

The FGO paper's LogisticsQA data set (questions over logistics documents) is private. This module
stands in for it with seeded UBL 2.1 invoices (``urn:oasis:names:specification:ubl:schema:xsd:
Invoice-2``) and one question: *what is the transport reference number?* (the consignment note, CMR,
waybill or shipment number the goods travelled under). What it shares with LogisticsQA, and what
makes it hard for a small model:

* **Long, semi-structured documents.** A full invoice is about 5.4k characters of XML (~1.8k
  tokens) with up to four parties, several document references and lines; the minimal layout is
  about 2.9k (~1k tokens). Either fits an 8k-token context with room to spare.
* **The answer moves.** Depending on layout and seed it sits in ``cac:Delivery/cac:Shipment/cbc:ID``,
  ``cac:Delivery/cbc:TrackingID``, an ``AdditionalDocumentReference`` or ``DespatchDocumentReference``
  whose description says "Frachtbrief" / "Lettre de voiture" / ..., a free-text ``cbc:Note`` or an
  invoice line's note (see ``PLACEMENTS``).
* **Decoys.** Every document carries many reference-like numbers that are not the answer: invoice,
  order, buyer and contract references, delivery notes (despatch advice), packing lists, customs
  MRNs, container numbers, claim numbers, IBANs, VAT ids, GLNs, and often a *previous* shipment's
  consignment number, in the same format as the answer, in a note saying it was invoiced before.
* **Languages and layouts.** Notes, labels, item and party names are in English, German, French,
  Dutch or Spanish; layouts are a minimal invoice, a full trade invoice, a freight forwarder's
  invoice and a credit note (``InvoiceTypeCode`` 381). The right element depends on reading labels
  in the note's language and knowing which UBL element means transport. FGO partitions by
  ``layout``, as the paper partitions LogisticsQA by category.

Everything is a pure function of an invoice id ``"ubl-<seed>-<index>"``: ``invoice(id)`` regenerates
the same document in any process, so the agent's tools (``list_elements``, ``read_element``,
``search_references``) are plain module-level functions of the id, with no global state, and
picklable. Layout cycles with the index and language with ``index // 4 + seed``, so any 20
consecutive indices hold every (layout, language) pair once; the placement and all values are
drawn from a generator seeded by the id.

Two programs: ``ubl_program()`` reads the whole document (``document -> answer``); ``ubl_agent()``
is a ``dspy.ReAct`` agent that sees only the id (``invoice_id -> answer``) and must explore the
document with the tools. ``ubl_metric`` is exact match up to case, whitespace and surrounding
punctuation. Standard library only; nothing is ever executed.
"""

from __future__ import annotations

import datetime as _dt
import random
import re
import string
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

import dspy

from dspy_fgo.data.programs import single_step

__all__ = [
    "LAYOUTS", "LANGUAGES", "PLACEMENTS", "INSTRUCTION", "Invoice", "invoice", "ubl_id",
    "make_examples", "make_agent_examples", "split_ubl", "ubl_metric", "ubl_program", "ubl_agent",
    "list_elements", "read_element", "search_references",
]

LAYOUTS: tuple[str, ...] = ("minimal", "full", "forwarder", "credit_note")
LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "nl", "es")

# Where the transport reference may sit: placement -> the element path (relative to the root) whose
# text holds it. Notes hold it after a label ("Frachtbrief-Nr.: CMR4830917"), the others exactly.
PLACEMENTS: dict[str, str] = {
    "shipment_id": "cac:Delivery/cac:Shipment/cbc:ID",
    "tracking_id": "cac:Delivery/cbc:TrackingID",
    "additional_document": "cac:AdditionalDocumentReference/cbc:ID",
    "despatch_document": "cac:DespatchDocumentReference/cbc:ID",
    "note": "cbc:Note",
    "line_note": "cac:InvoiceLine/cbc:Note",
}
_LAYOUT_PLACEMENTS: dict[str, tuple[str, ...]] = {
    "minimal": ("note", "shipment_id", "tracking_id"),
    "full": ("additional_document", "despatch_document", "shipment_id", "note"),
    "forwarder": ("line_note", "additional_document", "shipment_id", "note"),
    "credit_note": ("note", "additional_document", "despatch_document", "tracking_id"),
}

INSTRUCTION = "Extract the transport reference number from the invoice."

_NS = {
    "": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
}
_ID = re.compile(r"^ubl-(\d+)-(\d+)$")
_SPLIT_START = {"train": 0, "val": 100_000, "test": 200_000}  # fixed, disjoint index ranges

# --------------------------------------------------------------------------- language tables

_LANG: dict[str, dict[str, Any]] = {
    "en": {
        "country": "GB", "currency": "GBP", "vat": 20, "date": "%d/%m/%Y",
        "cities": [("Felixstowe", "IP11 3SY"), ("Manchester", "M17 1DB"), ("Birmingham", "B6 7EU"),
                   ("Leeds", "LS9 0PS")],
        "streets": ["Dock Road", "Trafford Park Road", "Station Road", "Gateway Way"],
        "names": ["Thompson", "Harris", "Clarke", "Walker", "Bennett"],
        "forms": ["Engineering Ltd", "Supplies Ltd", "Trading Ltd", "Industries plc"],
        "carrier": "Haulage Ltd", "forwarder": "Freight Forwarding Ltd",
        "goods": ["Pallet of M8 hex bolts", "Hydraulic pump HP-200", "Corrugated boxes 60x40", "Ball bearing 6204-2RS",
                  "Steel shelving unit", "Cable reel 50 m"],
        "services": ["Road freight {a} - {b}", "Export customs clearance", "Fuel surcharge", "Pallet exchange",
                     "Terminal handling"],
        "labels": ["Consignment note no.", "CMR no.", "Transport ref", "Waybill no.", "Carrier consignment no."],
        "sentence": "Goods carried under consignment note {ref}.",
        "transport_doc": ["Consignment note (CMR)", "Road consignment note", "Waybill"],
        "previous": "Consignment {ref} of {date} was already invoiced on invoice {inv}.",
        "payment": "Please quote invoice {inv} with your payment.",
        "customer": "Customer no. {x}",
        "order": "Your order {x} of {date}",
        "terms": "Payment within 30 days net",
        "delivery_note": "Delivery note", "packing_list": "Packing list", "origin": "Certificate of origin",
        "customs": "Export declaration (MRN)", "damage": "Damage report",
        "job": "Our job no. {x}", "container": "Container {x}, {n} pallets",
        "credit": "Credit for goods damaged in transit, claim {x}.",
        "credit_for": "Credit note for invoice {inv}", "return": "Return authorisation {x}",
    },
    "de": {
        "country": "DE", "currency": "EUR", "vat": 19, "date": "%d.%m.%Y",
        "cities": [("Hamburg", "20457"), ("Duisburg", "47119"), ("München", "80939"), ("Köln", "50829")],
        "streets": ["Hafenstraße", "Industriestraße", "Am Güterbahnhof", "Lagerweg"],
        "names": ["Müller", "Schneider", "Becker", "Hoffmann", "Wagner"],
        "forms": ["Maschinenbau GmbH", "Handels GmbH", "Metallwerke AG", "Industriebedarf KG"],
        "carrier": "Spedition GmbH", "forwarder": "Internationale Spedition GmbH & Co. KG",
        "goods": ["Palette Sechskantschrauben M8", "Hydraulikpumpe HP-200", "Faltkartons 60x40", "Kugellager 6204-2RS",
                  "Schwerlastregal", "Kabeltrommel 50 m"],
        "services": ["Frachtkosten {a} - {b}", "Ausfuhrzollabfertigung", "Dieselzuschlag", "Palettentausch",
                     "Terminalgebühr"],
        "labels": ["Frachtbrief-Nr.", "CMR-Nr.", "Sendungsnummer", "Transportreferenz", "Frachtbriefnummer"],
        "sentence": "Die Ware wurde mit Frachtbrief {ref} befördert.",
        "transport_doc": ["Frachtbrief (CMR)", "CMR-Frachtbrief", "Frachtbrief"],
        "previous": "Die Sendung {ref} vom {date} wurde bereits mit Rechnung {inv} abgerechnet.",
        "payment": "Bitte geben Sie bei Zahlung die Rechnungsnummer {inv} an.",
        "customer": "Kundennummer {x}",
        "order": "Ihre Bestellung {x} vom {date}",
        "terms": "Zahlbar innerhalb 30 Tagen netto",
        "delivery_note": "Lieferschein", "packing_list": "Packliste", "origin": "Ursprungszeugnis",
        "customs": "Ausfuhranmeldung (MRN)", "damage": "Schadensprotokoll",
        "job": "Unser Speditionsauftrag {x}", "container": "Container {x}, {n} Paletten",
        "credit": "Gutschrift wegen Transportschaden, Schadensnummer {x}.",
        "credit_for": "Gutschrift zu Rechnung {inv}", "return": "Retourennummer {x}",
    },
    "fr": {
        "country": "FR", "currency": "EUR", "vat": 20, "date": "%d/%m/%Y",
        "cities": [("Lyon", "69007"), ("Lille", "59000"), ("Marseille", "13002"), ("Le Havre", "76600")],
        "streets": ["Rue du Port", "Avenue de l'Industrie", "Quai de la Gare", "Rue des Entrepôts"],
        "names": ["Dupont", "Lefèvre", "Moreau", "Girard", "Fontaine"],
        "forms": ["Industries SA", "Distribution SAS", "Mécanique SARL", "Fournitures SAS"],
        "carrier": "Transports SARL", "forwarder": "Transit International SAS",
        "goods": ["Palette de vis M8", "Pompe hydraulique HP-200", "Cartons 60x40", "Roulement à billes 6204-2RS",
                  "Rayonnage métallique", "Touret de câble 50 m"],
        "services": ["Transport routier {a} - {b}", "Dédouanement export", "Surcharge carburant",
                     "Échange de palettes", "Manutention terminal"],
        "labels": ["N° de lettre de voiture", "N° CMR", "Réf. transport", "N° d'expédition",
                   "Lettre de voiture n°"],
        "sentence": "Marchandise transportée sous lettre de voiture {ref}.",
        "transport_doc": ["Lettre de voiture (CMR)", "Lettre de voiture CMR", "Lettre de voiture"],
        "previous": "L'envoi {ref} du {date} a déjà été facturé (facture {inv}).",
        "payment": "Merci d'indiquer la facture {inv} lors du paiement.",
        "customer": "N° client {x}",
        "order": "Votre commande {x} du {date}",
        "terms": "Paiement à 30 jours net",
        "delivery_note": "Bon de livraison", "packing_list": "Liste de colisage", "origin": "Certificat d'origine",
        "customs": "Déclaration d'export (MRN)", "damage": "Constat d'avarie",
        "job": "Notre dossier {x}", "container": "Conteneur {x}, {n} palettes",
        "credit": "Avoir pour marchandise endommagée pendant le transport, sinistre n° {x}.",
        "credit_for": "Avoir sur facture {inv}", "return": "N° de retour {x}",
    },
    "nl": {
        "country": "NL", "currency": "EUR", "vat": 21, "date": "%d-%m-%Y",
        "cities": [("Rotterdam", "3089 JB"), ("Venlo", "5928 PN"), ("Utrecht", "3542 AD"), ("Tilburg", "5048 AS")],
        "streets": ["Havenweg", "Industrieweg", "Stationsplein", "Transportweg"],
        "names": ["De Vries", "Jansen", "Van Dijk", "Bakker", "Visser"],
        "forms": ["Handelsmaatschappij B.V.", "Techniek B.V.", "Groothandel N.V.", "Metaalwerken B.V."],
        "carrier": "Transport B.V.", "forwarder": "Expeditie B.V.",
        "goods": ["Pallet zeskantbouten M8", "Hydraulische pomp HP-200", "Vouwdozen 60x40", "Kogellager 6204-2RS",
                  "Stellingkast staal", "Kabelhaspel 50 m"],
        "services": ["Wegvervoer {a} - {b}", "Douaneafhandeling export", "Brandstoftoeslag", "Palletruil",
                     "Terminalkosten"],
        "labels": ["Vrachtbriefnummer", "CMR-nr.", "Zendingnummer", "Transportreferentie", "Vrachtbrief nr."],
        "sentence": "Goederen vervoerd onder vrachtbrief {ref}.",
        "transport_doc": ["Vrachtbrief (CMR)", "CMR-vrachtbrief", "Vrachtbrief"],
        "previous": "Zending {ref} van {date} is reeds gefactureerd met factuur {inv}.",
        "payment": "Vermeld bij betaling factuurnummer {inv}.",
        "customer": "Klantnummer {x}",
        "order": "Uw bestelling {x} van {date}",
        "terms": "Betaling binnen 30 dagen netto",
        "delivery_note": "Pakbon", "packing_list": "Paklijst", "origin": "Certificaat van oorsprong",
        "customs": "Uitvoeraangifte (MRN)", "damage": "Schaderapport",
        "job": "Ons dossiernummer {x}", "container": "Container {x}, {n} pallets",
        "credit": "Creditering wegens transportschade, schadenummer {x}.",
        "credit_for": "Creditnota bij factuur {inv}", "return": "Retournummer {x}",
    },
    "es": {
        "country": "ES", "currency": "EUR", "vat": 21, "date": "%d/%m/%Y",
        "cities": [("Zaragoza", "50197"), ("Valencia", "46024"), ("Barcelona", "08040"), ("Bilbao", "48015")],
        "streets": ["Calle del Puerto", "Avenida de la Industria", "Polígono Plaza", "Calle Logística"],
        "names": ["García", "Martínez", "López", "Sánchez", "Navarro"],
        "forms": ["Distribuciones S.A.", "Industrial S.L.", "Suministros S.L.", "Metalúrgica S.A."],
        "carrier": "Transportes S.L.", "forwarder": "Tránsitos Internacionales S.A.",
        "goods": ["Palé de tornillos M8", "Bomba hidráulica HP-200", "Cajas de cartón 60x40", "Rodamiento 6204-2RS",
                  "Estantería metálica", "Bobina de cable 50 m"],
        "services": ["Transporte por carretera {a} - {b}", "Despacho de aduanas de exportación",
                     "Recargo por combustible", "Intercambio de palés", "Manipulación en terminal"],
        "labels": ["N.º de carta de porte", "N.º CMR", "Ref. transporte", "N.º de envío", "Carta de porte n.º"],
        "sentence": "Mercancía transportada con carta de porte {ref}.",
        "transport_doc": ["Carta de porte (CMR)", "Carta de porte CMR", "Carta de porte"],
        "previous": "El envío {ref} del {date} ya se facturó con la factura {inv}.",
        "payment": "Indique la factura {inv} en el pago.",
        "customer": "N.º de cliente {x}",
        "order": "Su pedido {x} del {date}",
        "terms": "Pago a 30 días neto",
        "delivery_note": "Albarán", "packing_list": "Lista de embalaje", "origin": "Certificado de origen",
        "customs": "Declaración de exportación (MRN)", "damage": "Informe de daños",
        "job": "Nuestro expediente {x}", "container": "Contenedor {x}, {n} palés",
        "credit": "Abono por mercancía dañada en el transporte, siniestro n.º {x}.",
        "credit_for": "Abono de la factura {inv}", "return": "N.º de devolución {x}",
    },
}

# --------------------------------------------------------------------------- a tiny XML builder


class _E:
    """An element: ``tag`` like ``"cbc:ID"``, text (a leaf) or children, and attributes."""

    __slots__ = ("tag", "content", "attrs")

    def __init__(self, tag: str, content: Any = None, **attrs: str):
        self.tag, self.attrs = tag, attrs
        self.content = [c for c in content if c is not None] if isinstance(content, list) else content


def _inline(el: _E) -> str:
    attrs = "".join(f' {k}="{escape(str(v), {chr(34): "&quot;"})}"' for k, v in el.attrs.items())
    if isinstance(el.content, list):
        return f"<{el.tag}{attrs}>{''.join(_inline(c) for c in el.content)}</{el.tag}>"
    return f"<{el.tag}{attrs}>{escape(str(el.content))}</{el.tag}>"


_INLINE = 160  # containers up to this many characters go on one line, as in many real UBL files


def _render(el: _E, depth: int, out: list[str]) -> None:
    pad = " " * depth
    attrs = "".join(f' {k}="{escape(str(v), {chr(34): "&quot;"})}"' for k, v in el.attrs.items())
    if isinstance(el.content, list) and len(line := _inline(el)) <= _INLINE:
        out.append(pad + line)
    elif isinstance(el.content, list):
        out.append(f"{pad}<{el.tag}{attrs}>")
        for child in el.content:
            _render(child, depth + 1, out)
        out.append(f"{pad}</{el.tag}>")
    else:
        out.append(f"{pad}<{el.tag}{attrs}>{escape(str(el.content))}</{el.tag}>")


def _to_xml(children: list[_E]) -> str:
    ns = " ".join(f'xmlns{":" + p if p else ""}="{u}"' for p, u in _NS.items())
    out = ['<?xml version="1.0" encoding="UTF-8"?>', f"<Invoice {ns}>"]
    for child in children:
        if child is not None:
            _render(child, 1, out)
    out.append("</Invoice>")
    return "\n".join(out)


# --------------------------------------------------------------------------- reference-like values


class _Gen:
    """Random values for one document; remembers every reference-like decoy it hands out."""

    def __init__(self, rng: random.Random, lang: str):
        self.rng, self.lang, self.L = rng, lang, _LANG[lang]
        self.decoys: list[str] = []
        self.gold = ""
        self.kind = 0  # the format of the last transport_ref

    def digits(self, k: int) -> str:
        return "".join(self.rng.choice(string.digits) for _ in range(k))

    def upper(self, k: int) -> str:
        return "".join(self.rng.choice(string.ascii_uppercase) for _ in range(k))

    def alnum(self, k: int) -> str:
        return "".join(self.rng.choice(string.ascii_uppercase + string.digits) for _ in range(k))

    def pick(self, options):
        return self.rng.choice(options)

    def decoy(self, make) -> str:
        """A fresh decoy from ``make()``, distinct from the gold and from earlier decoys."""
        while True:
            value = make()
            if value != self.gold and value not in self.decoys:
                self.decoys.append(value)
                return value

    def transport_ref(self, kind: int | None = None) -> str:
        """A transport reference in one of eight formats (``kind``, random when None)."""
        yy = self.rng.randint(23, 25)
        kinds = [
            lambda: f"CMR{self.digits(7)}",
            lambda: f"{yy}{self.upper(1)}{self.digits(7)}",
            lambda: f"SHP-{yy}-{self.digits(6)}",
            lambda: f"1Z{self.alnum(6)}{self.digits(10)}",
            lambda: f"{self.digits(3)}-{self.digits(8)}",
            lambda: f"{self.digits(5)}/{yy}/{self.upper(2)}",
            lambda: f"JJD{self.digits(14)}",
            lambda: f"{self.upper(2)}{self.digits(9)}{self.pick(['DE', 'FR', 'NL', 'ES', 'GB'])}",
        ]
        self.kind = self.rng.randrange(len(kinds)) if kind is None else kind
        return kinds[self.kind]()

    def invoice_no(self, year: int) -> str:
        yy = year % 100
        return self.pick([
            lambda: f"INV-{year}-{self.digits(5)}", lambda: f"RE{yy}{self.digits(5)}",
            lambda: f"F{year}-{self.digits(4)}", lambda: f"FV/{year}/{self.digits(4)}",
            lambda: f"{year}{self.digits(6)}", lambda: f"VF{yy}-{self.digits(5)}",
        ])()

    def order_no(self) -> str:
        return self.pick([lambda: f"PO-{self.digits(5)}", lambda: f"45{self.digits(8)}",
                          lambda: f"BE-{self.rng.randint(23, 25)}-{self.digits(4)}", lambda: f"ORD{self.digits(6)}"])()

    def buyer_ref(self) -> str:
        return self.pick([lambda: f"KST-{self.digits(4)}", lambda: f"CC{self.digits(4)}",
                          lambda: f"{self.digits(3)}-{self.digits(5)}-{self.digits(2)}",  # a Leitweg-ID look-alike
                          lambda: f"DEP-{self.upper(2)}{self.digits(3)}"])()

    def delivery_note_no(self) -> str:
        return self.pick([lambda: f"LS-{self.rng.randint(23, 25)}-{self.digits(5)}", lambda: f"DN{self.digits(6)}",
                          lambda: f"80{self.digits(6)}", lambda: f"DLV-{self.digits(5)}"])()

    def gln(self, country: str) -> str:
        prefix = {"DE": "40", "FR": "30", "NL": "87", "ES": "84", "GB": "50"}[country]
        body = prefix + self.digits(10)
        total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))  # GS1 mod-10 check digit
        return body + str((10 - total % 10) % 10)

    def vat_id(self, country: str) -> str:
        return {"DE": lambda: f"DE{self.digits(9)}", "FR": lambda: f"FR{self.digits(11)}",
                "NL": lambda: f"NL{self.digits(9)}B01", "ES": lambda: f"ESB{self.digits(8)}",
                "GB": lambda: f"GB{self.digits(9)}"}[country]()

    def iban(self, country: str) -> str:
        bban = {"DE": lambda: self.digits(18), "FR": lambda: self.digits(23), "ES": lambda: self.digits(20),
                "NL": lambda: self.upper(4) + self.digits(10), "GB": lambda: self.upper(4) + self.digits(14)}[country]()
        number = int("".join(str(int(c, 36)) for c in bban + country + "00"))
        return f"{country}{98 - number % 97:02d}{bban}"

    def container(self) -> str:
        return f"{self.pick(['MSK', 'CMA', 'HLX', 'MSC', 'TGH'])}U{self.digits(7)}"

    def mrn(self, country: str) -> str:
        return f"{self.rng.randint(23, 25)}{country}{self.alnum(13)}{self.digits(1)}"


# --------------------------------------------------------------------------- document building


@dataclass(frozen=True)
class Invoice:
    """One generated invoice. ``placement`` names the ``PLACEMENTS`` entry holding the answer."""

    id: str
    xml: str
    transport_reference: str  # the gold answer
    layout: str
    language: str
    placement: str
    decoys: tuple[str, ...] = ()  # reference-like values in the document that are not the answer


def _money(x: float) -> str:
    return f"{x:.2f}"


def _party(g: _Gen, name: str, country: str, *, rich: bool, street: bool = False) -> tuple[_E, str]:
    """A ``cac:Party`` in ``country``; ``rich`` adds an endpoint (GLN) and postal zone. Returns (party, VAT id)."""
    lang = next(code for code, t in _LANG.items() if t["country"] == country)
    city, zone = g.pick(_LANG[lang]["cities"])
    vat = g.decoy(lambda: g.vat_id(country))
    party = _E("cac:Party", [
        _E("cbc:EndpointID", g.decoy(lambda: g.gln(country)), schemeID="0088") if rich else None,
        _E("cac:PartyName", [_E("cbc:Name", name)]),
        _E("cac:PostalAddress", [
            _E("cbc:StreetName", f"{g.pick(_LANG[lang]['streets'])} {g.rng.randint(1, 180)}") if street else None,
            _E("cbc:CityName", city),
            _E("cbc:PostalZone", zone) if rich else None,
            _E("cac:Country", [_E("cbc:IdentificationCode", country)]),
        ]),
        _E("cac:PartyTaxScheme", [_E("cbc:CompanyID", vat), _E("cac:TaxScheme", [_E("cbc:ID", "VAT")])]),
    ])
    return party, vat


def _company(g: _Gen, lang: str, form: str | None = None) -> str:
    return f"{g.pick(_LANG[lang]['names'])} {form or g.pick(_LANG[lang]['forms'])}"


def _line(g: _Gen, idx: int, name: str, qty: int, price: float, currency: str, rate: int, *,
          unit: str = "C62", note: str | None = None, rich: bool = False) -> tuple[_E, float]:
    amount = round(qty * price, 2)
    line = _E("cac:InvoiceLine", [
        _E("cbc:ID", str(idx)),
        _E("cbc:Note", note) if note else None,
        _E("cbc:InvoicedQuantity", str(qty), unitCode=unit),
        _E("cbc:LineExtensionAmount", _money(amount), currencyID=currency),
        _E("cac:Item", [
            _E("cbc:Name", name),
            _E("cac:SellersItemIdentification", [_E("cbc:ID", g.decoy(lambda: f"ART-{g.digits(5)}"))])
            if rich else None,
            _E("cac:ClassifiedTaxCategory", [_E("cbc:ID", "S"), _E("cbc:Percent", str(rate)),
                                             _E("cac:TaxScheme", [_E("cbc:ID", "VAT")])]),
        ]),
        _E("cac:Price", [_E("cbc:PriceAmount", _money(price), currencyID=currency)]),
    ])
    return line, amount


def _doc_ref(tag: str, ref: str, description: str | None, code: str | None = None) -> _E:
    return _E(tag, [_E("cbc:ID", ref), _E("cbc:DocumentTypeCode", code) if code else None,
                    _E("cbc:DocumentDescription", description) if description else None])


def _gold_note(g: _Gen, ref: str) -> str:
    L = g.L
    label = g.pick(L["labels"])
    return g.pick([f"{label}: {ref}", f"{label} {ref}", L["sentence"].format(ref=ref)])


@dataclass(frozen=True)
class _Frame:
    """What every part of one invoice shares: its layout, where the gold goes, dates and numbers."""

    layout: str
    placement: str
    issue: _dt.date
    delivered: _dt.date
    inv: str
    order: str
    buyer_lang: str

    @property
    def rich(self) -> bool:
        return self.layout != "minimal"

    @property
    def buyer_country(self) -> str:
        return _LANG[self.buyer_lang]["country"]


def _build(g: _Gen, layout: str, placement: str) -> str:
    """The XML of one invoice; the gold (``g.gold``) goes where ``placement`` says. The parts are
    drawn in a fixed order from one generator, so an id always gives the same document."""
    rng = g.rng
    issue = _dt.date(2024, 1, 1) + _dt.timedelta(days=rng.randrange(600))
    delivered = issue - _dt.timedelta(days=rng.randint(1, 9))
    inv = g.decoy(lambda: g.invoice_no(issue.year))
    order = g.decoy(g.order_no)
    f = _Frame(layout, placement, issue, delivered, inv, order, g.pick(LANGUAGES))
    # Parties: the forwarder's invoice comes from the forwarder; the others from a manufacturer.
    supplier_name = _company(g, g.lang, g.L["forwarder"] if layout == "forwarder" else None)
    supplier, _ = _party(g, supplier_name, g.L["country"], rich=f.rich, street=f.rich)
    customer, _ = _party(g, _company(g, f.buyer_lang), f.buyer_country, rich=f.rich)
    notes = _notes(g, f)
    original = g.decoy(lambda: g.invoice_no(issue.year)) if layout == "credit_note" else None
    despatch, additional = _references(g, f)
    lines, total = _lines(g, f)
    delivery = _delivery(g, f)
    payment = _E("cac:PaymentMeans", [
        _E("cbc:PaymentMeansCode", "58" if g.L["currency"] == "EUR" else "30"),
        _E("cbc:PaymentID", inv) if f.rich else None,
        _E("cac:PayeeFinancialAccount", [_E("cbc:ID", g.decoy(lambda: g.iban(g.L["country"])))]),
    ])
    return _to_xml(_document(g, f, notes, original, despatch, additional, [supplier, customer],
                             delivery, payment) + _totals(g, f, total) + lines)


def _fmt(g: _Gen, d: _dt.date) -> str:
    return d.strftime(g.L["date"])


def _notes(g: _Gen, f: _Frame) -> list[str]:
    """The invoice's notes, decoys included; the gold joins them when placement is "note"."""
    L, rng, layout, issue = g.L, g.rng, f.layout, f.issue
    notes: list[str] = []
    if layout != "minimal" and rng.random() < 0.75:
        # A previous shipment, half the time in the same format as the answer.
        kind = g.kind if rng.random() < 0.5 else None
        previous = g.decoy(lambda: g.transport_ref(kind))
        before = issue - _dt.timedelta(days=rng.randint(20, 90))
        old_inv = g.decoy(lambda: g.invoice_no(before.year))
        notes.append(L["previous"].format(ref=previous, date=_fmt(g, before), inv=old_inv))
    if layout == "minimal":
        notes.append(L["payment"].format(inv=f.inv))
    elif layout == "full":
        notes.append(L["customer"].format(x=g.decoy(lambda: g.pick([f"KD-{g.digits(5)}", f"C{g.digits(6)}"]))))
        notes.append(L["order"].format(x=f.order, date=_fmt(g, issue - _dt.timedelta(days=rng.randint(10, 40)))))
    elif layout == "forwarder":
        notes.append(L["job"].format(x=g.decoy(lambda: f"{L['country']}-{issue.year % 100}-{g.digits(5)}")))
    else:  # credit_note
        notes.append(L["credit"].format(x=g.decoy(lambda: g.pick([f"SCH-{g.digits(6)}", f"CLM{g.digits(6)}"]))))
        notes.append(L["return"].format(x=g.decoy(lambda: f"RMA-{g.digits(5)}")))
    if f.placement == "note":
        notes.append(_gold_note(g, g.gold))
    rng.shuffle(notes)
    return notes


def _references(g: _Gen, f: _Frame) -> tuple[list[_E], list[_E]]:
    """Despatch and additional document references, decoys included, and the gold where placed there."""
    L, rng, layout, ref, country = g.L, g.rng, f.layout, g.gold, g.L["country"]
    despatch: list[_E] = []
    additional: list[_E] = []
    gold_desc = g.pick(L["transport_doc"])
    if layout in ("full", "credit_note"):
        dn = g.decoy(g.delivery_note_no)
        described = rng.random() < 0.6
        despatch.append(_doc_ref("cac:DespatchDocumentReference", dn, L["delivery_note"] if described else None))
    if f.placement == "despatch_document":
        despatch.append(_doc_ref("cac:DespatchDocumentReference", ref, gold_desc))
    if layout == "full":
        additional.append(_doc_ref("cac:AdditionalDocumentReference", g.decoy(lambda: f"PL-{g.digits(6)}"),
                                   L["packing_list"], "271" if rng.random() < 0.5 else None))
        if rng.random() < 0.5:
            additional.append(_doc_ref("cac:AdditionalDocumentReference", g.decoy(lambda: f"{country}{g.digits(8)}"),
                                       L["origin"], "861"))
    elif layout == "forwarder":
        mrn = g.decoy(lambda: g.mrn(country))
        additional.append(_doc_ref("cac:AdditionalDocumentReference", mrn, L["customs"], "830"))
    elif layout == "credit_note":
        report = g.decoy(lambda: f"DR-{g.digits(5)}")
        additional.append(_doc_ref("cac:AdditionalDocumentReference", report, L["damage"]))
    if f.placement == "additional_document":
        code = "730" if rng.random() < 0.5 else None  # UNCL1001 730: road consignment note
        additional.append(_doc_ref("cac:AdditionalDocumentReference", ref, gold_desc, code))
    rng.shuffle(despatch)
    rng.shuffle(additional)
    return despatch, additional


def _lines(g: _Gen, f: _Frame) -> tuple[list[_E], float]:
    """The invoice lines and their total: a forwarder's services (the gold may sit in a line's
    note), else goods."""
    L, rng, currency, rate = g.L, g.rng, g.L["currency"], g.L["vat"]
    lines: list[_E] = []
    total = 0.0
    if f.layout == "forwarder":
        a, b = g.pick(L["cities"])[0], g.pick(_LANG[f.buyer_lang]["cities"])[0]
        services = L["services"]
        freight_note = _gold_note(g, g.gold) if f.placement == "line_note" else None
        container_note = L["container"].format(x=g.decoy(g.container), n=rng.randint(8, 33))
        items = [(services[0].format(a=a, b=b), 1, round(rng.uniform(600, 2400), 2), freight_note or container_note)]
        for s in rng.sample(services[1:], rng.randint(1, 2)):
            items.append((s, 1, round(rng.uniform(20, 250), 2), None))
        if freight_note and len(items) > 1:  # the container note moves to another line
            items[1] = (*items[1][:3], container_note)
        for i, (name, qty, price, note) in enumerate(items, 1):
            line, amount = _line(g, i, name, qty, price, currency, rate, unit="E48", note=note)
            lines.append(line)
            total += amount
    else:
        n = {"minimal": 1, "full": 2, "credit_note": 1}[f.layout]
        for i, name in enumerate(rng.sample(L["goods"], n), 1):
            line, amount = _line(g, i, name, rng.randint(1, 40), round(rng.uniform(4, 400), 2), currency, rate,
                                 rich=f.layout == "full")
            lines.append(line)
            total += amount
    return lines, total


def _delivery(g: _Gen, f: _Frame) -> _E:
    rng, ref = g.rng, g.gold
    parts: list[_E | None] = [_E("cbc:ActualDeliveryDate", f.delivered.isoformat())]
    if f.placement == "tracking_id":
        parts.append(_E("cbc:TrackingID", ref))
    if f.rich:
        city, _ = g.pick(_LANG[f.buyer_lang]["cities"])
        parts.append(_E("cac:DeliveryLocation", [
            _E("cbc:ID", g.decoy(lambda: g.gln(f.buyer_country)), schemeID="0088"),
            _E("cac:Address", [_E("cbc:CityName", city),
                               _E("cac:Country", [_E("cbc:IdentificationCode", f.buyer_country)])]),
        ]))
    if f.layout in ("full", "forwarder") and rng.random() < 0.6:
        carrier = _company(g, g.lang, g.L["carrier"])
        parts.append(_E("cac:CarrierParty", [_E("cac:PartyName", [_E("cbc:Name", carrier)])]))
    if f.placement == "shipment_id":
        parts.append(_E("cac:Shipment", [
            _E("cbc:ID", ref),
            _E("cbc:GrossWeightMeasure", str(rng.randint(80, 9000)), unitCode="KGM") if f.rich else None,
        ]))
    return _E("cac:Delivery", parts)


def _document(g: _Gen, f: _Frame, notes, original, despatch, additional, parties, delivery, payment) -> list:
    """The header, references, parties, delivery and payment, in UBL's element order."""
    rng, layout, issue, rich = g.rng, f.layout, f.issue, f.rich
    return [
        _E("cbc:UBLVersionID", "2.1"),
        _E("cbc:CustomizationID", "urn:cen.eu:en16931:2017") if rich else None,
        _E("cbc:ID", f.inv),
        _E("cbc:IssueDate", issue.isoformat()),
        _E("cbc:DueDate", (issue + _dt.timedelta(days=30)).isoformat()) if layout != "credit_note" else None,
        _E("cbc:InvoiceTypeCode", "381" if layout == "credit_note" else "380"),
        *[_E("cbc:Note", n) for n in notes],
        _E("cbc:DocumentCurrencyCode", g.L["currency"]),
        _E("cbc:BuyerReference", g.decoy(g.buyer_ref)) if layout != "credit_note" else None,
        _E("cac:InvoicePeriod", [_E("cbc:StartDate", f.delivered.replace(day=1).isoformat()),
                                 _E("cbc:EndDate", f.delivered.isoformat())]) if layout == "forwarder" else None,
        _E("cac:OrderReference", [
            _E("cbc:ID", f.order),
            _E("cbc:SalesOrderID", g.decoy(lambda: f"SO{g.digits(6)}")) if layout == "full" else None,
        ]),
        _E("cac:BillingReference", [_E("cac:InvoiceDocumentReference", [
            _E("cbc:ID", original),
            _E("cbc:IssueDate", (issue - _dt.timedelta(days=rng.randint(15, 60))).isoformat()),
        ])])
        if original else None,
        *despatch,
        _E("cac:ContractDocumentReference", [_E("cbc:ID", g.decoy(lambda: f"RV-{issue.year - 1}-{g.digits(3)}"))])
        if layout == "full" else None,
        *additional,
        _E("cac:ProjectReference", [_E("cbc:ID", g.decoy(lambda: f"PRJ-{g.digits(4)}"))])
        if layout == "full" and rng.random() < 0.5 else None,
        _E("cac:AccountingSupplierParty", [parties[0]]),
        _E("cac:AccountingCustomerParty", [parties[1]]),
        _E("cac:PayeeParty", [
            _E("cac:PartyIdentification", [_E("cbc:ID", g.decoy(lambda: g.gln(g.L["country"])), schemeID="0088")]),
            _E("cac:PartyName", [_E("cbc:Name", _company(g, g.lang))]),
        ])
        if layout == "full" and rng.random() < 0.5 else None,
        delivery,
        payment,
        _E("cac:PaymentTerms", [_E("cbc:Note", g.L["terms"])]) if rich and layout != "credit_note" else None,
    ]


def _totals(g: _Gen, f: _Frame, total: float) -> list:
    currency = g.L["currency"]
    tax = round(total * g.L["vat"] / 100, 2)
    return [
        _E("cac:TaxTotal", [_E("cbc:TaxAmount", _money(tax), currencyID=currency)]),
        _E("cac:LegalMonetaryTotal", [
            _E("cbc:LineExtensionAmount", _money(total), currencyID=currency),
            _E("cbc:TaxExclusiveAmount", _money(total), currencyID=currency) if f.rich else None,
            _E("cbc:TaxInclusiveAmount", _money(total + tax), currencyID=currency),
            _E("cbc:PayableAmount", _money(total + tax), currencyID=currency),
        ]),
    ]


def ubl_id(index: int, seed: int = 0) -> str:
    """The id of document ``index`` of ``seed``: ``"ubl-<seed>-<index>"``."""
    if index < 0 or seed < 0:
        raise ValueError("index and seed must be >= 0")
    return f"ubl-{seed}-{index}"


@lru_cache(maxsize=512)
def invoice(invoice_id: str) -> Invoice:
    """Regenerate the invoice with this id (``"ubl-<seed>-<index>"``); the same id gives the same document.

    The layout is ``LAYOUTS[index % 4]``, the language ``LANGUAGES[(index // 4 + seed) % 5]``; the
    placement of the transport reference and every value are drawn from a generator seeded by the id.
    """
    m = _ID.match(str(invoice_id))
    if not m:
        raise ValueError(f"not a UBL invoice id: {invoice_id!r}; ids look like 'ubl-<seed>-<index>', e.g. 'ubl-0-7'")
    seed, index = int(m.group(1)), int(m.group(2))
    layout = LAYOUTS[index % len(LAYOUTS)]
    language = LANGUAGES[(index // len(LAYOUTS) + seed) % len(LANGUAGES)]
    for attempt in range(100):  # in the rare case the gold occurs by chance inside another value, redraw
        rng = random.Random(f"{invoice_id}#{attempt}")  # str seeds are stable across processes
        placement = rng.choice(_LAYOUT_PLACEMENTS[layout])
        g = _Gen(rng, language)
        g.gold = g.transport_ref()
        xml = _build(g, layout, placement)
        if xml.count(g.gold) == 1 and g.gold not in g.decoys:
            return Invoice(invoice_id, xml, g.gold, layout, language, placement, tuple(g.decoys))
    raise RuntimeError(f"could not generate {invoice_id!r}")  # pragma: no cover


# --------------------------------------------------------------------------- examples and splits


def _example(inv: Invoice, agent: bool) -> dspy.Example:
    fields = {"invoice_id": inv.id, "answer": inv.transport_reference, "layout": inv.layout,
              "language": inv.language, "placement": inv.placement}
    if agent:
        return dspy.Example(**fields).with_inputs("invoice_id")
    return dspy.Example(document=inv.xml, **fields).with_inputs("document")


def make_examples(n: int, seed: int = 0, start: int = 0) -> list[dspy.Example]:
    """Examples for documents ``start .. start+n-1`` of ``seed``; input ``document`` (the XML).

    Fields: ``invoice_id``, ``document``, ``answer`` (the gold transport reference), ``layout``,
    ``language``, ``placement``.
    """
    return [_example(invoice(ubl_id(i, seed)), agent=False) for i in range(start, start + n)]


def make_agent_examples(n: int, seed: int = 0, start: int = 0) -> list[dspy.Example]:
    """Like ``make_examples`` but input ``invoice_id`` only, and no ``document`` field: the agent must
    use the tools, and the optimizer's prompts are not filled with whole documents."""
    return [_example(invoice(ubl_id(i, seed)), agent=True) for i in range(start, start + n)]


def split_ubl(n_train: int = 8, n_val: int = 8, n_test: int = 20, seed: int = 0, agent: bool = False
              ) -> tuple[list[dspy.Example], list[dspy.Example], list[dspy.Example]]:
    """Fixed, disjoint train/val/test splits of one seed.

    Train is documents ``0 ..``, val ``100000 ..``, test ``200000 ..``: the ranges never overlap and
    do not depend on the other sizes, so growing the trainset never changes the test set. As layout
    cycles with the index, a split of ``4k`` documents holds ``k`` of each layout (and a split of 20
    every layout-language pair once). ``agent=True`` gives ``make_agent_examples`` (input
    ``invoice_id``) instead of ``make_examples`` (input ``document``).
    """
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    for name, n in sizes.items():
        if not 0 <= n <= 100_000:
            raise ValueError(f"n_{name} must be in 0..100000, got {n}")
    make = make_agent_examples if agent else make_examples
    train, val, test = (make(sizes[s], seed, _SPLIT_START[s]) for s in ("train", "val", "test"))
    return train, val, test


# --------------------------------------------------------------------------- metric and programs

_STRIP = " \t\r\n.,;:!?\"'`*()[]{}<>«»“”‘’"


def _normalize(text: Any) -> str:
    return " ".join(str(text).split()).lower().strip(_STRIP)


def ubl_metric(example: Any, pred: Any, trace: Any = None) -> bool:
    """Exact match of ``pred.answer`` (or a plain string) with ``example.answer``, ignoring case,
    runs of whitespace and surrounding quotes, brackets and punctuation. Nothing is extracted:
    "CMR-Nr. CMR4830917" is wrong when the answer is "CMR4830917"."""
    answer = pred if isinstance(pred, str) else getattr(pred, "answer", None)
    if answer is None:
        return False
    got = _normalize(answer)
    return bool(got) and got == _normalize(example.answer)


def ubl_program(kind: str = "predict") -> dspy.Module:
    """The program that reads the whole document: ``document -> answer`` with ``INSTRUCTION``.

    ``kind``: ``"predict"`` (``dspy.Predict``) or ``"cot"`` (``dspy.ChainOfThought``).
    """
    return single_step(dspy.Signature("document -> answer", INSTRUCTION), kind)


def ubl_agent(max_iters: int = 6) -> dspy.ReAct:
    """A ``dspy.ReAct`` agent, ``invoice_id -> answer`` with ``INSTRUCTION``, that never sees the
    whole document: it explores it with ``list_elements``, ``read_element`` and ``search_references``."""
    signature = dspy.Signature("invoice_id -> answer", INSTRUCTION)
    # DSPy takes a tool's description from its docstring verbatim; join the docstring's lines.
    tools = [dspy.Tool(f, desc=" ".join(f.__doc__.split())) for f in (list_elements, read_element, search_references)]
    return dspy.ReAct(signature, tools=tools, max_iters=max_iters)


# --------------------------------------------------------------------------- the agent's tools

_MAX_CHARS = 1500
_PREFIX = {v: k for k, v in _NS.items() if k}


@dataclass(frozen=True)
class _Node:
    path: tuple[tuple[str, int, int], ...]  # (prefixed tag, 1-based index among same-tag siblings, their count)
    el: ET.Element

    @property
    def text(self) -> str:
        return " ".join((self.el.text or "").split())

    def show(self) -> str:
        return "/".join(tag + (f"[{i}]" if n > 1 else "") for tag, i, n in self.path)


def _tag(el: ET.Element) -> str:
    uri, _, local = el.tag[1:].partition("}") if el.tag.startswith("{") else ("", "", el.tag)
    return f"{_PREFIX[uri]}:{local}" if uri in _PREFIX else local


@lru_cache(maxsize=64)
def _nodes(invoice_id: str) -> tuple[_Node, ...]:
    """Every element below the root, in document order, with its path."""
    root = ET.fromstring(invoice(invoice_id).xml)
    out: list[_Node] = []

    def walk(el: ET.Element, path: tuple) -> None:
        tags = [_tag(c) for c in el]
        seen: dict[str, int] = {}
        for child, tag in zip(el, tags, strict=True):
            seen[tag] = seen.get(tag, 0) + 1
            node = _Node((*path, (tag, seen[tag], tags.count(tag))), child)
            out.append(node)
            walk(child, node.path)

    walk(root, ())
    return tuple(out)


def _clean_id(invoice_id: str) -> str:
    return str(invoice_id).strip().strip("\"'` ")


_STEP = re.compile(r"^(?:(\w+):)?([\w.-]+)(?:\[(\d+)\])?$")


def _parse_path(path: str) -> list[tuple[str | None, str, int | None]] | None:
    steps = [s for s in str(path).strip().split("/") if s.strip()]
    if steps and steps[0].split(":")[-1] == "Invoice":
        steps = steps[1:]
    parsed = []
    for s in steps:
        m = _STEP.match(s.strip())
        if not m:
            return None
        parsed.append((m.group(1), m.group(2), int(m.group(3)) if m.group(3) else None))
    return parsed


def _step_matches(query: tuple[str | None, str, int | None], step: tuple[str, int, int]) -> bool:
    prefix, local, index = query
    tag, i, _ = step
    tag_prefix, _, tag_local = tag.rpartition(":")
    return local == tag_local and (prefix is None or prefix == tag_prefix) and (index is None or index == i)


def _find(invoice_id: str, path: str) -> list[_Node]:
    """Elements at ``path`` from the root; failing that, elements whose path ends with it."""
    query = _parse_path(path)
    if not query:
        return []
    nodes = _nodes(invoice_id)
    exact = [n for n in nodes if len(n.path) == len(query) and all(map(_step_matches, query, n.path))]
    if exact:
        return exact
    k = len(query)
    return [n for n in nodes if len(n.path) >= k and all(map(_step_matches, query, n.path[-k:]))]


def _leaf_line(node: _Node) -> str:
    attrs = "".join(f" [{k}={v}]" for k, v in node.el.attrib.items())
    return f"{node.show()}{attrs}: {node.text}"


def _truncate(lines: list[str], limit: int = _MAX_CHARS) -> str:
    out, size = [], 0
    for i, line in enumerate(lines):
        if size + len(line) > limit:
            out.append(f"... ({len(lines) - i} more lines; read a narrower path)")
            break
        out.append(line)
        size += len(line) + 1
    return "\n".join(out)


def _unknown(invoice_id: str) -> str | None:
    try:
        invoice(invoice_id)
    except ValueError as err:
        return f"Error: {err}"
    return None


def list_elements(invoice_id: str, path: str = "") -> str:
    """List the child elements of the invoice root (path "") or of the elements at `path`, with counts,
    no text. Names ending in "/" contain further elements. Paths look like "cac:Delivery/cac:Shipment"."""
    invoice_id = _clean_id(invoice_id)
    if err := _unknown(invoice_id):
        return err
    nodes = _nodes(invoice_id)
    if not str(path).strip().strip("/") or _parse_path(path) == []:
        parents, depth = [()], 0
        where = "the Invoice root"
    else:
        found = _find(invoice_id, path)
        if not found:
            return f"No element matches {path!r}. Call list_elements with path \"\" to see the top level."
        parents, depth = [n.path for n in found], len(found[0].path)
        where = path
    counts: dict[str, int] = {}
    container: dict[str, bool] = {}
    for node in nodes:
        if len(node.path) == depth + 1 and node.path[:-1] in parents:
            tag = node.path[-1][0]
            counts[tag] = counts.get(tag, 0) + 1
            container[tag] = container.get(tag, False) or len(node.el) > 0
    if not counts:
        return f"{where} has no child elements; read it with read_element."
    lines = [f"{tag}{'/' if container[tag] else ''}" + (f" (x{c})" if c > 1 else "") for tag, c in counts.items()]
    return f"Children of {where}:\n" + "\n".join(lines)


def read_element(invoice_id: str, path: str) -> str:
    """Read the text of every element at `path` (e.g. "cbc:Note", "cac:Delivery",
    "cac:AdditionalDocumentReference[2]"), one "full/path: text" line per value; containers show all
    values inside them. A path that does not start at the root matches elements whose path ends with it."""
    invoice_id = _clean_id(invoice_id)
    if err := _unknown(invoice_id):
        return err
    if _parse_path(path) == []:
        return "Give a path below the root, e.g. \"cbc:Note\"; list_elements shows the top level."
    found = _find(invoice_id, path)
    if not found:
        return f"No element matches {path!r}. Use list_elements to see which elements exist."
    nodes = _nodes(invoice_id)
    lines: list[str] = []
    for node in found:
        if len(node.el) == 0:
            lines.append(_leaf_line(node))
            continue
        k = len(node.path)
        lines += [_leaf_line(n) for n in nodes if len(n.path) > k and n.path[:k] == node.path and len(n.el) == 0]
    return _truncate(lines)


_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-/.]{3,}[A-Za-z0-9]")
_NOT_REFERENCES = {"cbc:PostalZone", "cbc:Percent", "cbc:UBLVersionID", "cbc:CustomizationID", "cbc:LineID",
                   "cbc:PaymentMeansCode", "cbc:InvoiceTypeCode", "cbc:DocumentTypeCode"}
_DATE = re.compile(r"^\d{1,4}[./-]\d{1,2}[./-]\d{1,4}$")


def search_references(invoice_id: str) -> str:
    """Find every reference-like token (invoice, order, document, shipment, account numbers, ...) in the
    invoice, one per line with the path of the element it is in and, for free text, the text around it.
    Amounts, dates, postal codes and quantities are left out."""
    invoice_id = _clean_id(invoice_id)
    if err := _unknown(invoice_id):
        return err
    lines: list[str] = []
    for node in _nodes(invoice_id):
        tag = node.path[-1][0]
        if len(node.el) or tag in _NOT_REFERENCES or tag.endswith(("Amount", "Quantity", "Measure", "Date")):
            continue
        text = node.text
        tokens = [t for t in _TOKEN.findall(text)
                  if sum(c.isdigit() for c in t) >= 3 and not _DATE.match(t) and not re.fullmatch(r"\d+\.\d+", t)]
        if tokens:
            context = f'  (in "{text[:100]}")' if len(text) > len(tokens[0]) + 2 else ""
            lines.append(f"{node.show()}: {', '.join(tokens)}{context}")
    return _truncate(lines, 2 * _MAX_CHARS) if lines else "No reference-like tokens found."
