"""French word lists for the sample reference data (all fictitious, all Windows-1252 safe)."""

from __future__ import annotations

from typing import NamedTuple


class Department(NamedTuple):
    """A surgical department: its name, set-code part, set-name word, store, sets, procedures."""

    name: str
    code: str
    word: str
    store: str
    sets: tuple[str, ...]
    procedures: tuple[str, ...]
    prion: bool


BASE_SIZES = ("GRANDE", "MOYENNE", "PETITE")
GENERIC_SETS = (
    "BOITE COMPLEMENTAIRE",
    "ECARTEURS",
    "PINCES",
    "INSTRUMENTS LONGS",
    "SUTURE",
    "PETITE CHIRURGIE",
)

DEPARTMENTS = (
    Department(
        "Digestif",
        "DIG",
        "DIGESTIVE",
        "Digestive",
        ("COELIOSCOPIE", "LAPAROTOMIE", "AGRAFAGE", "HERNIE", "PROCTOLOGIE"),
        (
            "Cholécystectomie par coelioscopie",
            "Hémicolectomie droite",
            "Cure de hernie inguinale",
            "Appendicectomie",
            "Sleeve gastrectomie",
        ),
        False,
    ),
    Department(
        "Urologie",
        "URO",
        "UROLOGIE",
        "Urologie",
        ("RTUV", "CYSTOSCOPIE", "PROSTATECTOMIE", "NEPHRECTOMIE", "URETEROSCOPIE"),
        (
            "TURBT (résection trans-urétrale d'une tumeur de la vessie)",
            "Prostatectomie radicale",
            "Urétéroscopie souple",
            "Néphrectomie partielle",
        ),
        False,
    ),
    Department(
        "Orthopédie",
        "ORT",
        "ORTHOPEDIE",
        "Ortho",
        ("PROTHESE HANCHE", "PROTHESE GENOU", "ARTHROSCOPIE", "OSTEOSYNTHESE", "MAIN"),
        (
            "Prothèse totale de hanche",
            "Prothèse totale de genou",
            "Arthroscopie du genou",
            "Ostéosynthèse du poignet",
        ),
        False,
    ),
    Department(
        "Gynécologie",
        "GYN",
        "GYNECOLOGIE",
        "Gynéco",
        ("CESARIENNE", "HYSTERECTOMIE", "CURETAGE", "HYSTEROSCOPIE", "COELIOSCOPIE"),
        (
            "Hystérectomie par coelioscopie",
            "Césarienne programmée",
            "Curetage utérin",
            "Hystéroscopie opératoire",
        ),
        False,
    ),
    Department(
        "ORL",
        "ORL",
        "ORL",
        "ORL",
        ("AMYGDALECTOMIE", "THYROIDE", "SINUS", "OTOLOGIE", "TRACHEOTOMIE"),
        ("Amygdalectomie", "Thyroïdectomie totale", "Septoplastie", "Tympanoplastie"),
        False,
    ),
    Department(
        "Ophtalmologie",
        "OPH",
        "OPHTALMO",
        "Ophtalmo",
        ("CATARACTE", "VITRECTOMIE", "PAUPIERES", "STRABISME", "MICRO"),
        (
            "Chirurgie de la cataracte (phacoémulsification)",
            "Vitrectomie postérieure",
            "Blépharoplastie",
        ),
        True,
    ),
    Department(
        "Cardio-vasculaire",
        "CAR",
        "CARDIO-VASCULAIRE",
        "Cardio",
        ("STERNOTOMIE", "VASCULAIRE", "VALVE", "CAROTIDE", "VARICES"),
        (
            "Pontage aorto-coronarien",
            "Remplacement valvulaire aortique",
            "Endartériectomie carotidienne",
            "Stripping de varices",
        ),
        False,
    ),
    Department(
        "Neurochirurgie",
        "NEU",
        "NEUROCHIRURGIE",
        "Neuro",
        ("CRANIOTOMIE", "RACHIS", "MICRO", "DERIVATION", "ARTHRODESE"),
        (
            "Craniotomie pour tumeur",
            "Arthrodèse lombaire",
            "Cure de hernie discale",
            "Dérivation ventriculo-péritonéale",
        ),
        True,
    ),
    Department(
        "Thoracique",
        "THO",
        "THORACIQUE",
        "Thorax",
        ("THORACOTOMIE", "THORACOSCOPIE", "MEDIASTINOSCOPIE", "COTES", "DRAINAGE"),
        ("Lobectomie pulmonaire", "Thoracoscopie", "Médiastinoscopie"),
        False,
    ),
    Department(
        "Plastique",
        "PLA",
        "PLASTIQUE",
        "Plastique",
        ("SEIN", "LAMBEAU", "GREFFE", "MICRO", "MAIN"),
        ("Reconstruction mammaire", "Lambeau libre", "Greffe de peau"),
        False,
    ),
    Department(
        "Maternité",
        "MAT",
        "OBSTETRIQUE",
        "Maternité",
        ("ACCOUCHEMENT", "CESARIENNE", "EPISIOTOMIE", "FORCEPS", "CERCLAGE"),
        ("Césarienne en urgence", "Cerclage du col", "Révision utérine"),
        False,
    ),
    Department(
        "Stomatologie",
        "STO",
        "STOMATO",
        "Stomato",
        ("EXTRACTION", "MAXILLO", "IMPLANTOLOGIE", "FRACTURE", "GLANDES"),
        ("Extraction des dents de sagesse", "Ostéosynthèse mandibulaire", "Pose d'implants"),
        False,
    ),
)

# (description template, sizes); {s} is one of the sizes.
INSTRUMENT_MODELS = (
    ("PINCE KOCHER DROITE 1X2 GRIFFES {s}MM", ("140", "160", "200")),
    ("PINCE KOCHER COURBE {s}MM", ("140", "160", "200")),
    ("PINCE HEMOSTATIQUE PEAN COURBE {s}MM", ("140", "160", "185")),
    ("PINCE HALSTEAD MOSQUITO COURBE {s}MM", ("120", "125")),
    ("CISEAUX METZENBAUM COURBES {s}MM", ("145", "180", "230")),
    ("CISEAUX MAYO DROITS {s}MM", ("150", "170")),
    ("CISEAUX A FILS DROITS {s}MM", ("145", "160")),
    ("PORTE-AIGUILLE MAYO-HEGAR {s}MM", ("140", "180", "200")),
    ("PINCE A DISSEQUER DE BAKEY {s}MM", ("200", "240")),
    ("PINCE A DISSEQUER AVEC GRIFFES {s}MM", ("145", "160")),
    ("PINCE A DISSEQUER SANS GRIFFES {s}MM", ("145", "160")),
    ("VALVE LERICHE LARGEUR {s}MM LONG.275MM", ("40", "60", "80")),
    ("ECARTEUR FARABEUF {s}MM (PAIRE)", ("120", "150")),
    ("MANCHE BISTOURI NO.{s}", ("3 125MM", "4 133MM", "7 160MM")),
    ("PINCE A CHAMP BACKHAUS {s}MM", ("110", "135")),
    ("PINCE BABCOCK {s}MM", ("160", "200")),
    ("PINCE ALLIS {s}MM", ("155", "190")),
    ("CUPULE INOX {s}ML", ("60", "100", "250")),
    ("CANULE D'ASPIRATION YANKAUER CH {s}", ("18", "23")),
    ("ECARTEUR AUTOSTATIQUE GOSSET {s}", ("ADULTE", "ENFANT")),
    ("DISSECTEUR ROCHESTER COURBE {s}MM", ("220", "260")),
    ("CURETTE VOLKMANN NO.{s}", ("0", "2", "4")),
    ("RUGINE FARABEUF COURBE {s}MM", ("13", "16")),
    ("OPTIQUE 30° {s} LONG.310MM", ("5MM", "10MM")),
    ("TROCART {s} AVEC VALVE", ("5MM", "10MM", "12MM")),
    ("PINCE DE PREHENSION COELIO FENETREE {s}", ("5MM", "10MM")),
    ("PINCE A SUTURE MCPHERSON {s}", ("0,12MM", "0,3MM")),
    ("BLEPHAROSTAT BARRAQUER {s}", ("ADULTE", "ENFANT")),
    ("DAVIER {s}", ("SUPERIEUR", "INFERIEUR")),
    ("PINCE GOUGE LISTON {s}MM", ("180", "240")),
    ("ECARTEUR HOHMANN {s}MM", ("18", "24", "43")),
    ("MARTEAU CHIRURGICAL {s}G", ("250", "450")),
)

ACCESSORIES = (
    "PANIER PERFORE 480X250MM",
    "TAPIS SILICONE PICOTS",
    "PLATEAU INOX 300X200MM",
    "PORTE-INSTRUMENTS A PEIGNE",
)

# (packaging, shelf life in days)
PACKAGINGS = (
    ("CONTENEUR", 180),
    ("CONTENEUR AVEC FILTRE PERMANENT", 180),
    ("ONE STEP 121 X121", 90),
    ("DOUBLE EMBALLAGE NON TISSE", 90),
    ("DOUBLE SACHET THERMOSOUDE", 365),
    ("SACHET SIMPLE", 30),
)

WASH_PROGRAMS = (
    "INSTRU 93°C 3MIN NORMAL",
    "INSTRU 93°C 10MIN LONG",
    "MICROCHIR 90°C 5MIN",
    "COELIO 93°C 5MIN CANULES",
)
STERI_NORMAL = "NORMAL 134°"
STERI_PRION = "PRION 134°"

# (type, model, procedure)
ENDOSCOPE_TYPES = (
    ("Gastroscope", "GIF-H190", "Gastroscopie (FOGD)"),
    ("Coloscope", "CF-HQ190L", "Coloscopie totale"),
    ("Duodénoscope", "TJF-Q190V", "CPRE (cholangio-pancréatographie rétrograde)"),
    ("Bronchoscope", "BF-H190", "Fibroscopie bronchique"),
    ("Cystoscope souple", "CYF-V2", "Cystoscopie souple"),
    ("Nasofibroscope", "ENF-V3", "Nasofibroscopie"),
    ("Écho-endoscope", "GF-UCT180", "Écho-endoscopie haute"),
)
ENDOSCOPE_STATES = (
    ("Disponible", 8),
    ("En armoire de séchage", 4),
    ("À retraiter", 2),
    ("En réparation", 1),
)

SURNAMES = (
    "Lefèvre", "Dubois", "Moreau", "Laurent", "Simon", "Michel", "Leroy", "Roux", "Bertrand",
    "Morel", "Fournier", "Girard", "Bonnet", "Dupont", "Lambert", "Fontaine", "Rousseau",
    "Vincent", "Muller", "Faure", "André", "Mercier", "Blanc", "Guérin", "Boyer", "Garnier",
    "Chevalier", "François", "Legrand", "Gauthier", "Perrin", "Robin", "Clément", "Morin",
    "Nicolas", "Henry", "Roussel", "Mathieu", "Masson", "Marchand", "Duval", "Denis", "Dumont",
    "Lemaire", "Noël", "Meyer", "Dufour", "Meunier", "Brun", "Blanchard", "Giraud", "Joly",
    "Rivière", "Lucas", "Brunet", "Gaillard", "Barbier", "Arnaud", "Gérard", "Roche", "Renard",
    "Schmitt", "Leroux", "Colin", "Vidal", "Caron", "Picard", "Fabre", "Aubert", "Lemoine",
    "Renaud", "Dumas", "Lacroix", "Olivier", "Bourgeois", "Benoît", "Leclerc", "Rolland",
    "Lecomte", "Dupuis", "Guillot", "Hubert", "Berger", "Carpentier", "Moulin", "Deschamps",
    "Vasseur", "Boucher", "Fleury", "Royer", "Jacquet", "Poirier", "Carré", "Ménard",
    "Maillard", "Hervé", "Léger", "Prévost", "Lévêque", "Barré", "Lemaître", "Bénard",
    "Maréchal", "Barthélemy", "Étienne", "Rémy", "Cœur", "Le Gall", "Da Silva",
)  # fmt: skip

GIVEN_NAMES = (
    ("Jean", "M"), ("Marie", "F"), ("Pierre", "M"), ("Françoise", "F"), ("Michel", "M"),
    ("Hélène", "F"), ("André", "M"), ("Cécile", "F"), ("Jérôme", "M"), ("Agnès", "F"),
    ("Loïc", "M"), ("Zoé", "F"), ("Gaël", "M"), ("Anaïs", "F"), ("Joël", "M"), ("Noémie", "F"),
    ("Éric", "M"), ("Léa", "F"), ("Raphaël", "M"), ("Chloé", "F"), ("François", "M"),
    ("Inès", "F"), ("Benoît", "M"), ("Bérénice", "F"), ("Thierry", "M"), ("Élodie", "F"),
    ("Maël", "M"), ("Océane", "F"), ("Stéphane", "M"), ("Geneviève", "F"),
)  # fmt: skip

ANESTHESIAS = (("A. Générale", 10), ("A. Locorégionale", 4), ("A. Locale", 2), ("Sédation", 1))
ADMISSIONS = (("H", 6), ("A", 3), ("U", 1))
NOTES = (
    ("", 30),
    ("Allergie latex", 2),
    ("Patient porteur BMR: isolement contact", 1),
    ("Prévoir amplificateur de brillance", 1),
    ('Matériel prêté: ancillaire "Corail"; à réceptionner la veille', 1),
    ("Prévoir boîte complémentaire", 1),
    ("Rappeler le bloc après la consultation;\nconfirmer l'heure", 1),
)
