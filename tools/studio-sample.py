#!/usr/bin/env python3
"""Writes apps/studio/sample/legacy.json: the studio's legacy data as the old
static-JSON dashboard kept it ({"users":[...],"jobs":[...]}), about 500
creators and 2,000 jobs, with the faults real legacy files have (records
without ids, ids twice, wrong-case statuses, numbers as strings, skills as
one string, missing titles, negative budgets, nulls where objects belong).

Deterministic (a fixed seed): run it again and the file is the same.
    python3 tools/studio-sample.py > apps/studio/sample/legacy.json
"""
import json
import random
import sys

rng = random.Random(20261123)

FIRST = ["Ava", "Ben", "Cleo", "Dev", "Ema", "Finn", "Gia", "Hugo", "Ines", "Jon", "Kai", "Lena",
         "Milo", "Nia", "Omar", "Pia", "Quin", "Rosa", "Sami", "Tess", "Uma", "Vik", "Wren", "Yara",
         "Zane", "Ada", "Bo", "Cyr", "Dana", "Eli"]
LAST = ["Reyes", "Okafor", "Lindqvist", "Moreau", "Tanaka", "Silva", "Novak", "Haddad", "Kowalski",
        "Brennan", "Castillo", "Ivanova", "Mensah", "Park", "Rossi", "Schmidt", "Walsh", "Yilmaz"]
SKILLS = ["camera", "editing", "color", "sound", "drone", "lighting", "motion graphics",
          "directing", "producing", "photography", "scriptwriting", "gaffer", "makeup", "voiceover"]
CITIES = ["Atlanta", "Austin", "Chicago", "Denver", "Los Angeles", "Miami", "Nashville",
          "New York", "Portland", "Seattle", None]
CLIENTS = ["Northwind Coffee", "Harbor Bank", "Grove Organics", "Metro Transit", "Blue Fin Sushi",
           "Peak Outdoor", "Lumen Labs", "City Ballet", "Riverside Clinic", "Summit Realty",
           "Atlas Freight", "Nova Records"]
KINDS = ["Brand film", "Product shoot", "Event coverage", "Interview series", "Social cutdowns",
         "Music video", "Training video", "Drone flyover", "Podcast video", "Launch teaser"]
STATUSES = ["open", "assigned", "in_progress", "completed", "cancelled"]


def user(i):
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return {
        "id": f"u-{i:04d}",
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower()}{i}@creators.example",
        "skills": rng.sample(SKILLS, rng.randint(1, 4)),
        "status": "active" if rng.random() < 0.85 else "inactive",
        "city": rng.choice(CITIES),
        "day_rate_cents": rng.choice([35000, 45000, 50000, 65000, 80000, 95000, 120000]),
    }


def job(i, users):
    status = rng.choices(STATUSES, [30, 20, 15, 30, 5])[0]
    assigned = None if status == "open" else rng.choice(users)["id"]
    return {
        "id": f"j-{i:05d}",
        "title": f"{rng.choice(KINDS)} for {rng.choice(CLIENTS)}",
        "client": rng.choice(CLIENTS),
        "status": status,
        "assigned_to": assigned,
        "due": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "budget_cents": rng.choice([150000, 250000, 400000, 600000, 900000, 1500000]),
    }


users = [user(i) for i in range(1, 501)]
jobs = [job(i, users) for i in range(1, 2001)]

# What years of hand-edited JSON do to data.
def breaks(records, n, fn):
    for r in rng.sample(range(len(records)), n):
        records[r] = fn(dict(records[r])) if isinstance(records[r], dict) else records[r]

breaks(users, 4, lambda u: {k: v for k, v in u.items() if k != "id"})            # no id
breaks(users, 5, lambda u: {**u, "status": "Active"})                              # wrong case
breaks(users, 3, lambda u: {**u, "day_rate_cents": "450.00"})                      # a string
breaks(users, 3, lambda u: {**u, "skills": "camera, editing"})                     # one string
breaks(users, 2, lambda u: {**u, "name": ""})                                      # empty name
breaks(users, 2, lambda u: {**u, "email": 5551234})                                # a number
users[137] = None                                                                  # a hole
users.insert(300, dict(users[42]))                                                 # twice
users.insert(301, ["u-9999", "Stray Array"])                                       # not an object

breaks(jobs, 6, lambda j: {**j, "status": "done"})                                 # unknown status
breaks(jobs, 4, lambda j: {**j, "budget_cents": -250000})                          # negative
breaks(jobs, 5, lambda j: {k: v for k, v in j.items() if k != "title"})           # no title
breaks(jobs, 3, lambda j: {k: v for k, v in j.items() if k != "id"})              # no id
breaks(jobs, 2, lambda j: {**j, "id": j["id"].replace("-", " ") if "id" in j else "x y"})  # bad id
breaks(jobs, 2, lambda j: {**j, "due": 20260401})                                  # a number
jobs.insert(1000, dict(jobs[10]))                                                  # twice
jobs.insert(1500, dict(jobs[11]))

json.dump({"users": users, "jobs": jobs}, sys.stdout, indent=1)
sys.stdout.write("\n")
