"""A recipient's country from its international calling code (ITU-T E.164).

Rate cards price WhatsApp messages by the recipient's country. A number is looked up by its longest
known prefix (three digits, then two, then one). Numbers of the North American Numbering Plan (+1)
are counted as the United States and +7 as Russia (except +76 and +77, Kazakhstan): rate cards price
those shared codes as one market. A number whose code is not listed answers None, and the rate
card's rest-of-the-world cell ("*") prices it.
"""

from __future__ import annotations

_CODES: dict[str, str] = {
    "1": "US", "7": "RU", "76": "KZ", "77": "KZ",
    "20": "EG", "27": "ZA", "30": "GR", "31": "NL", "32": "BE", "33": "FR", "34": "ES", "36": "HU",
    "39": "IT", "40": "RO", "41": "CH", "43": "AT", "44": "GB", "45": "DK", "46": "SE", "47": "NO",
    "48": "PL", "49": "DE", "51": "PE", "52": "MX", "53": "CU", "54": "AR", "55": "BR", "56": "CL",
    "57": "CO", "58": "VE", "60": "MY", "61": "AU", "62": "ID", "63": "PH", "64": "NZ", "65": "SG",
    "66": "TH", "81": "JP", "82": "KR", "84": "VN", "86": "CN", "90": "TR", "91": "IN", "92": "PK",
    "93": "AF", "94": "LK", "95": "MM", "98": "IR",
    "211": "SS", "212": "MA", "213": "DZ", "216": "TN", "218": "LY", "220": "GM", "221": "SN",
    "222": "MR", "223": "ML", "224": "GN", "225": "CI", "226": "BF", "227": "NE", "228": "TG",
    "229": "BJ", "230": "MU", "231": "LR", "232": "SL", "233": "GH", "234": "NG", "235": "TD",
    "236": "CF", "237": "CM", "238": "CV", "239": "ST", "240": "GQ", "241": "GA", "242": "CG",
    "243": "CD", "244": "AO", "245": "GW", "248": "SC", "249": "SD", "250": "RW", "251": "ET",
    "252": "SO", "253": "DJ", "254": "KE", "255": "TZ", "256": "UG", "257": "BI", "258": "MZ",
    "260": "ZM", "261": "MG", "263": "ZW", "264": "NA", "265": "MW", "266": "LS", "267": "BW",
    "268": "SZ", "269": "KM", "291": "ER", "297": "AW", "298": "FO", "299": "GL",
    "350": "GI", "351": "PT", "352": "LU", "353": "IE", "354": "IS", "355": "AL", "356": "MT",
    "357": "CY", "358": "FI", "359": "BG", "370": "LT", "371": "LV", "372": "EE", "373": "MD",
    "374": "AM", "375": "BY", "376": "AD", "377": "MC", "378": "SM", "380": "UA", "381": "RS",
    "382": "ME", "383": "XK", "385": "HR", "386": "SI", "387": "BA", "389": "MK", "420": "CZ",
    "421": "SK", "423": "LI",
    "500": "FK", "501": "BZ", "502": "GT", "503": "SV", "504": "HN", "505": "NI", "506": "CR",
    "507": "PA", "509": "HT", "590": "GP", "591": "BO", "592": "GY", "593": "EC", "594": "GF",
    "595": "PY", "596": "MQ", "597": "SR", "598": "UY",
    "670": "TL", "673": "BN", "675": "PG", "676": "TO", "679": "FJ", "685": "WS",
    "852": "HK", "853": "MO", "855": "KH", "856": "LA", "880": "BD", "886": "TW",
    "960": "MV", "961": "LB", "962": "JO", "963": "SY", "964": "IQ", "965": "KW", "966": "SA",
    "967": "YE", "968": "OM", "970": "PS", "971": "AE", "972": "IL", "973": "BH", "974": "QA",
    "975": "BT", "976": "MN", "977": "NP", "992": "TJ", "993": "TM", "994": "AZ", "995": "GE",
    "996": "KG", "998": "UZ",
}  # fmt: skip

COUNTRIES = frozenset(_CODES.values())


def _longest(prefix: str) -> str | None:
    for size in (3, 2, 1):
        country = _CODES.get(prefix[:size])
        if country is not None:
            return country
    return None


# Every three-digit start of a number, looked up once: "551" -> "BR", "999" -> None.
_BY_PREFIX: dict[str, str | None] = {f"{n:03d}": _longest(f"{n:03d}") for n in range(1000)}


def country_of(number: str) -> str | None:
    """The ISO 3166 alpha-2 country of an international number ("+55 11 9...", "5511..."), or None
    when its calling code is not listed. Raises ValueError for something that is not a number."""
    digits = number[1:] if number[:1] == "+" else number
    if not (digits.isascii() and digits.isdigit()):  # written with spaces, dashes or brackets
        digits = number.strip().removeprefix("+")
        digits = digits.replace(" ", "").replace("-", "").replace("(", "").replace(")", "")
        if not (digits.isascii() and digits.isdigit()):
            raise ValueError("not an international phone number")
    if not 6 <= len(digits) <= 15:
        raise ValueError("not an international phone number")
    return _BY_PREFIX[digits[:3]]
