"""Which countries use which currency, for the per-country keys of `price_json`/`currency_json`.

Compiled for this project from ISO 4217 (current currencies as of 2026: HRK→EUR 2023, BGN→EUR
2026, ANG→XCG 2025, ZWL→ZWG 2024) and ISO 3166-1 alpha-2, plus XK (Kosovo, which commercetools
accepts). The reference plugin reads the npm `country-data` package instead; its table is older
(HRK, BYR, MRO, ...) and mixes in non-country codes (EU, EA, IC, CP, FX), which are left out here.
No maintained Python package with this table is installed (pycountry/babel are not), so it is
kept here; fund codes (BOV, CLF, COU, USN, ...) are left out because no shop sells in them.
"""

from __future__ import annotations

# Each 3-letter currency code is followed by its countries (alphabetical); a country with two
# legal tenders appears under both.
_TABLE = """
AED AE|AFN AF|ALL AL|AMD AM|ANG CW SX|AOA AO|ARS AR|AUD AU CC CX HM KI NF NR TV|AWG AW|AZN AZ
BAM BA|BBD BB|BDT BD|BGN BG|BHD BH|BIF BI|BMD BM|BND BN|BOB BO|BRL BR|BSD BS|BTN BT|BWP BW
BYN BY|BZD BZ|CAD CA|CDF CD|CHF CH LI|CLP CL|CNY CN|COP CO|CRC CR|CUP CU|CVE CV|CZK CZ|DJF DJ
DKK DK FO GL|DOP DO|DZD DZ|EGP EG|ERN ER|ETB ET
EUR AD AT AX BE BG BL CY DE EE ES FI FR GF GP GR HR IE IT LT LU LV MC ME MF MQ MT NL PM PT RE SI
    SK SM TF VA XK YT
FJD FJ|FKP FK|GBP GB GG IM JE|GEL GE|GHS GH|GIP GI|GMD GM|GNF GN|GTQ GT|GYD GY|HKD HK|HNL HN
HTG HT|HUF HU|IDR ID|ILS IL PS|INR BT IN|IQD IQ|IRR IR|ISK IS|JMD JM|JOD JO PS|JPY JP|KES KE
KGS KG|KHR KH|KMF KM|KPW KP|KRW KR|KWD KW|KYD KY|KZT KZ|LAK LA|LBP LB|LKR LK|LRD LR|LSL LS
LYD LY|MAD EH MA|MDL MD|MGA MG|MKD MK|MMK MM|MNT MN|MOP MO|MRU MR|MUR MU|MVR MV|MWK MW|MXN MX
MYR MY|MZN MZ|NAD NA|NGN NG|NIO NI|NOK BV NO SJ|NPR NP|NZD CK NU NZ PN TK|OMR OM|PAB PA|PEN PE
PGK PG|PHP PH|PKR PK|PLN PL|PYG PY|QAR QA|RON RO|RSD RS|RUB RU|RWF RW|SAR SA|SBD SB|SCR SC
SDG SD|SEK SE|SGD SG|SHP SH|SLE SL|SOS SO|SRD SR|SSP SS|STN ST|SVC SV|SYP SY|SZL SZ|THB TH
TJS TJ|TMT TM|TND TN|TOP TO|TRY TR|TTD TT|TWD TW|TZS TZ|UAH UA|UGX UG
USD AS BQ EC FM GU HT IO MH MP PA PR PW SV TC TL UM US VG VI
UYU UY|UZS UZ|VED VE|VES VE|VND VN|VUV VU|WST WS|XAF CF CG CM GA GQ TD
XCD AG AI DM GD KN LC MS VC|XCG CW SX|XOF BF BJ CI GW ML NE SN TG|XPF NC PF WF|YER YE
ZAR LS NA ZA|ZMW ZM|ZWG ZW
"""


def _parse(table: str) -> dict[str, tuple[str, ...]]:
    parsed: dict[str, list[str]] = {}
    countries: list[str] = []
    for token in table.replace("|", " ").split():
        if len(token) == 3:
            countries = parsed.setdefault(token, [])
        else:
            countries.append(token)
    return {currency: tuple(codes) for currency, codes in parsed.items()}


COUNTRIES_BY_CURRENCY: dict[str, tuple[str, ...]] = _parse(_TABLE)


def countries_using(currency: str) -> tuple[str, ...]:
    """ISO 3166-1 alpha-2 codes of the countries whose legal tender is `currency` (may be empty)."""
    return COUNTRIES_BY_CURRENCY.get(currency.upper(), ())
